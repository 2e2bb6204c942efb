//! Channels and their configuration from an environment-style map.

use std::collections::BTreeMap;
use std::fmt;

use heartbeat_core::Secret;
use lettre::message::Mailbox;
use url::Url;

use crate::error::{ChannelConfigError, Redactor};

/// Every variable this crate reads: `(name, default, description)`.
/// An empty default means "unset"; an empty value counts as unset.
pub const CHANNEL_VARIABLES: &[(&str, &str, &str)] = &[
    (
        "N8N_WEBHOOK_URL",
        "",
        "n8n webhook (http/https URL). POST JSON {\"title\", \"message\"} as the replaced system sent it, plus the structured alert fields (id, target, state, reason, started_at_ms, occurred_at_ms, duration_s, latency_ms, maintenance, held_back).",
    ),
    (
        "WEBHOOK_URL",
        "",
        "Generic webhook (http/https URL): POST the full alert as JSON, with headers Idempotency-Key and X-Heartbeat-Alert-Id set to the alert id.",
    ),
    (
        "WEBHOOK_SECRET",
        "",
        "Optional key for WEBHOOK_URL: adds header X-Heartbeat-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>.",
    ),
    (
        "DISCORD_WEBHOOK_URL",
        "",
        "Discord webhook URL: one message with an embed (red when down, green when recovered); mentions are disabled.",
    ),
    (
        "SLACK_WEBHOOK_URL",
        "",
        "Slack incoming-webhook URL: text plus header and section blocks.",
    ),
    (
        "TELEGRAM_BOT_TOKEN",
        "",
        "Telegram bot token (<digits>:<key>); needs TELEGRAM_CHAT_ID. Messages are sent with parse_mode HTML, all text escaped.",
    ),
    (
        "TELEGRAM_CHAT_ID",
        "",
        "Telegram chat: a numeric id or @channelname; needs TELEGRAM_BOT_TOKEN.",
    ),
    (
        "TELEGRAM_API_URL",
        "https://api.telegram.org",
        "Telegram Bot API base URL (for a local Bot API server or tests).",
    ),
    (
        "TELEGRAM_DISABLE_NOTIFICATION",
        "false",
        "Boolean (true/false, 1/0, yes/no, on/off): deliver Telegram messages silently.",
    ),
    (
        "NTFY_URL",
        "",
        "ntfy topic URL, e.g. https://ntfy.sh/mytopic: POST the Markdown message with headers Title, Priority (high when down) and Tags.",
    ),
    (
        "NTFY_TOKEN",
        "",
        "Optional ntfy access token, sent as Authorization: Bearer; needs NTFY_URL.",
    ),
    (
        "SMTP_HOST",
        "",
        "SMTP server host name; enables e-mail alerts and needs SMTP_FROM and SMTP_TO.",
    ),
    (
        "SMTP_PORT",
        "587",
        "SMTP port, 1-65535 (the default is 465 when SMTP_SECURITY=tls and 25 when SMTP_SECURITY=none).",
    ),
    (
        "SMTP_SECURITY",
        "starttls",
        "starttls (STARTTLS required), tls (implicit TLS) or none (plain text, for local relays; a password is then refused unless SMTP_HOST is a loopback address).",
    ),
    (
        "SMTP_USERNAME",
        "",
        "SMTP login; SMTP_USERNAME and SMTP_PASSWORD go together.",
    ),
    (
        "SMTP_PASSWORD",
        "",
        "SMTP password, taken verbatim (not trimmed).",
    ),
    (
        "SMTP_FROM",
        "",
        "Sender mailbox, e.g. Heartbeat <heartbeat@example.com>.",
    ),
    ("SMTP_TO", "", "Comma-separated recipient mailboxes."),
];

/// Default Telegram Bot API base URL.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// The kinds of channel, with their stable labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    N8n,
    Webhook,
    Discord,
    Slack,
    Telegram,
    Ntfy,
    Email,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 7] = [
        ChannelKind::N8n,
        ChannelKind::Webhook,
        ChannelKind::Discord,
        ChannelKind::Slack,
        ChannelKind::Telegram,
        ChannelKind::Ntfy,
        ChannelKind::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::N8n => "n8n",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Discord => "discord",
            ChannelKind::Slack => "slack",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Ntfy => "ntfy",
            ChannelKind::Email => "email",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS; fails if the server does not offer it.
    StartTls,
    /// Implicit TLS from the first byte (SMTPS).
    Tls,
    /// No encryption at all (local relays, tests).
    None,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// A validated http(s) URL that may carry a token. Never printed.
#[derive(Clone)]
pub(crate) struct SecretUrl(Url);

impl SecretUrl {
    pub(crate) fn url(&self) -> &Url {
        &self.0
    }

    /// `scheme://host[:port]`, which is safe to print.
    fn origin(&self) -> String {
        let u = &self.0;
        let host = u.host_str().unwrap_or("?");
        match u.port() {
            Some(p) => format!("{}://{host}:{p}", u.scheme()),
            None => format!("{}://{host}", u.scheme()),
        }
    }
}

#[derive(Clone)]
pub(crate) enum Inner {
    N8n {
        url: SecretUrl,
    },
    Webhook {
        url: SecretUrl,
        secret: Option<Secret>,
    },
    Discord {
        url: SecretUrl,
    },
    Slack {
        url: SecretUrl,
    },
    Telegram {
        api: SecretUrl,
        token: Secret,
        chat_id: String,
        disable_notification: bool,
    },
    Ntfy {
        url: SecretUrl,
        token: Option<Secret>,
    },
    Email(EmailConfig),
}

#[derive(Clone)]
pub(crate) struct EmailConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: SmtpSecurity,
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) from: Mailbox,
    pub(crate) to: Vec<Mailbox>,
}

/// One configured alert destination. Its `Debug` shows the kind and a
/// secret-free summary only.
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Inner,
    pub(crate) redactor: Redactor,
}

impl Channel {
    pub fn kind(&self) -> ChannelKind {
        match &self.inner {
            Inner::N8n { .. } => ChannelKind::N8n,
            Inner::Webhook { .. } => ChannelKind::Webhook,
            Inner::Discord { .. } => ChannelKind::Discord,
            Inner::Slack { .. } => ChannelKind::Slack,
            Inner::Telegram { .. } => ChannelKind::Telegram,
            Inner::Ntfy { .. } => ChannelKind::Ntfy,
            Inner::Email(_) => ChannelKind::Email,
        }
    }

    /// Stable label: "n8n", "webhook", "discord", "slack", "telegram", "ntfy", "email".
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// A one-line description without secrets, for start-up logs:
    /// origin only for URLs (no path, no query), never tokens or passwords.
    pub fn summary(&self) -> String {
        match &self.inner {
            Inner::N8n { url } | Inner::Discord { url } | Inner::Slack { url } => {
                format!("{} -> {}", self.name(), url.origin())
            }
            Inner::Webhook { url, secret } => format!(
                "webhook -> {}{}",
                url.origin(),
                if secret.is_some() { " (signed)" } else { "" }
            ),
            Inner::Telegram { api, chat_id, .. } => {
                format!("telegram -> chat {chat_id} via {}", api.origin())
            }
            Inner::Ntfy { url, token } => format!(
                "ntfy -> {}{}",
                url.origin(),
                if token.is_some() { " (token)" } else { "" }
            ),
            Inner::Email(e) => format!(
                "email -> {}:{} ({}), {} recipient(s)",
                e.host,
                e.port,
                e.security.as_str(),
                e.to.len()
            ),
        }
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("kind", &self.kind())
            .field("summary", &self.summary())
            .finish()
    }
}

/// Reads the alert channels from an environment-style map (the caller passes
/// it; this crate never reads the process environment).
///
/// Any number of channels may be active; none is fine too (empty list).
/// Empty values count as unset. All errors are collected and returned
/// together, each naming its variable; no error repeats a value.
pub fn channels_from_map(
    env: &BTreeMap<String, String>,
) -> Result<Vec<Channel>, Vec<ChannelConfigError>> {
    let mut p = Parser {
        env,
        errors: Vec::new(),
    };
    let mut channels = Vec::new();

    if let Some(url) = p.url("N8N_WEBHOOK_URL") {
        channels.push(http_channel(Inner::N8n { url: url.clone() }, &url, &[]));
    }

    let webhook = p.url("WEBHOOK_URL");
    let webhook_secret = p.get("WEBHOOK_SECRET").map(str::to_owned);
    match (webhook, webhook_secret) {
        (Some(url), secret) => {
            let secret = secret.map(Secret::new);
            let extra: Vec<&str> = secret.iter().map(Secret::expose).collect();
            let ch = http_channel(
                Inner::Webhook {
                    url: url.clone(),
                    secret: secret.clone(),
                },
                &url,
                &extra,
            );
            channels.push(ch);
        }
        (None, Some(_)) if !p.is_set("WEBHOOK_URL") => {
            p.error("WEBHOOK_SECRET", "is set but WEBHOOK_URL is not");
        }
        _ => {}
    }

    if let Some(url) = p.url("DISCORD_WEBHOOK_URL") {
        channels.push(http_channel(Inner::Discord { url: url.clone() }, &url, &[]));
    }
    if let Some(url) = p.url("SLACK_WEBHOOK_URL") {
        channels.push(http_channel(Inner::Slack { url: url.clone() }, &url, &[]));
    }

    if let Some(ch) = telegram(&mut p) {
        channels.push(ch);
    }
    if let Some(ch) = ntfy(&mut p) {
        channels.push(ch);
    }
    if let Some(ch) = email(&mut p) {
        channels.push(ch);
    }

    if p.errors.is_empty() {
        Ok(channels)
    } else {
        Err(p.errors)
    }
}

fn http_channel(inner: Inner, url: &SecretUrl, extra_secrets: &[&str]) -> Channel {
    let mut redactor = Redactor::default();
    redactor.add_url(url.url());
    for s in extra_secrets {
        redactor.add(s);
    }
    Channel { inner, redactor }
}

struct Parser<'a> {
    env: &'a BTreeMap<String, String>,
    errors: Vec<ChannelConfigError>,
}

impl Parser<'_> {
    fn error(&mut self, variable: &str, message: impl Into<String>) {
        self.errors.push(ChannelConfigError::new(variable, message));
    }

    /// The value untrimmed, `None` when unset or blank.
    fn raw(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The trimmed value, `None` when unset or blank.
    fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim)
    }

    fn is_set(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// An absolute http(s) URL with a host. Errors never echo the value.
    fn url(&mut self, name: &str) -> Option<SecretUrl> {
        let value = self.get(name)?.to_owned();
        match parse_http_url(&value) {
            Ok(u) => Some(u),
            Err(msg) => {
                self.error(name, msg);
                None
            }
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> bool {
        let Some(v) = self.get(name) else {
            return default;
        };
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                self.error(
                    name,
                    "is not a boolean; use true/false, 1/0, yes/no or on/off",
                );
                default
            }
        }
    }
}

fn parse_http_url(value: &str) -> Result<SecretUrl, String> {
    const NOT_SHOWN: &str = "(value not shown: it may hold a token)";
    let url = match Url::parse(value) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err(format!(
                "is not an absolute URL: it needs a scheme, e.g. https://... {NOT_SHOWN}"
            ));
        }
        Err(e) => return Err(format!("is not a valid URL: {e} {NOT_SHOWN}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be an http:// or https:// URL {NOT_SHOWN}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("has no host {NOT_SHOWN}"));
    }
    Ok(SecretUrl(url))
}

fn telegram(p: &mut Parser<'_>) -> Option<Channel> {
    let token = p.get("TELEGRAM_BOT_TOKEN").map(str::to_owned);
    let chat = p.get("TELEGRAM_CHAT_ID").map(str::to_owned);
    let api_set = p.is_set("TELEGRAM_API_URL");
    let silent_set = p.is_set("TELEGRAM_DISABLE_NOTIFICATION");
    let api = p.url("TELEGRAM_API_URL");
    let disable_notification = p.boolean("TELEGRAM_DISABLE_NOTIFICATION", false);

    match (&token, &chat) {
        (None, None) => {
            if api_set {
                p.error(
                    "TELEGRAM_API_URL",
                    "is set but TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID are not",
                );
            }
            if silent_set {
                p.error(
                    "TELEGRAM_DISABLE_NOTIFICATION",
                    "is set but TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID are not",
                );
            }
            return None;
        }
        (None, Some(_)) => {
            p.error(
                "TELEGRAM_BOT_TOKEN",
                "is required when TELEGRAM_CHAT_ID is set",
            );
        }
        (Some(_), None) => {
            p.error(
                "TELEGRAM_CHAT_ID",
                "is required when TELEGRAM_BOT_TOKEN is set",
            );
        }
        (Some(_), Some(_)) => {}
    }

    let mut ok = true;
    if let Some(t) = &token
        && !valid_bot_token(t)
    {
        p.error(
            "TELEGRAM_BOT_TOKEN",
            "does not look like a bot token (<digits>:<letters, digits, _ or ->) (value not shown)",
        );
        ok = false;
    }
    if let Some(c) = &chat
        && !valid_chat_id(c)
    {
        p.error(
            "TELEGRAM_CHAT_ID",
            "must be a numeric chat id (e.g. -1001234567890) or @channelname",
        );
        ok = false;
    }
    let api = match (api, api_set) {
        (Some(a), _) => a,
        (None, true) => return None, // already reported
        (None, false) => match parse_http_url(DEFAULT_TELEGRAM_API_URL) {
            Ok(a) => a,
            Err(msg) => {
                p.error("TELEGRAM_API_URL", msg);
                return None;
            }
        },
    };
    let (Some(token), Some(chat_id), true) = (token, chat, ok) else {
        return None;
    };
    let mut redactor = Redactor::default();
    redactor.add(&token);
    if let Some((_, key)) = token.split_once(':') {
        redactor.add(key);
    }
    redactor.add_url(api.url());
    Some(Channel {
        inner: Inner::Telegram {
            api,
            token: Secret::new(token),
            chat_id,
            disable_notification,
        },
        redactor,
    })
}

fn valid_bot_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, key)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

fn valid_chat_id(c: &str) -> bool {
    if let Some(name) = c.strip_prefix('@') {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    } else {
        c.parse::<i64>().is_ok()
    }
}

fn ntfy(p: &mut Parser<'_>) -> Option<Channel> {
    let url_set = p.is_set("NTFY_URL");
    let url = p.url("NTFY_URL");
    let token = p.get("NTFY_TOKEN").map(str::to_owned);
    if let Some(t) = &token {
        if !url_set {
            p.error("NTFY_TOKEN", "is set but NTFY_URL is not");
            return None;
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            p.error(
                "NTFY_TOKEN",
                "must be printable ASCII without spaces (value not shown)",
            );
            return None;
        }
    }
    let url = url?;
    if url.url().path().trim_matches('/').is_empty() {
        p.error(
            "NTFY_URL",
            "must name a topic, e.g. https://ntfy.sh/mytopic (value not shown)",
        );
        return None;
    }
    let extra: Vec<&str> = token.iter().map(String::as_str).collect();
    let ch = http_channel(
        Inner::Ntfy {
            url: url.clone(),
            token: token.as_deref().map(Secret::new),
        },
        &url,
        &extra,
    );
    Some(ch)
}

const SMTP_COMPANIONS: [&str; 6] = [
    "SMTP_PORT",
    "SMTP_SECURITY",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_FROM",
    "SMTP_TO",
];

fn email(p: &mut Parser<'_>) -> Option<Channel> {
    let Some(host) = p.get("SMTP_HOST").map(str::to_owned) else {
        for var in SMTP_COMPANIONS {
            if p.is_set(var) {
                p.error(var, "is set but SMTP_HOST is not");
            }
        }
        return None;
    };
    let mut ok = true;
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        p.error("SMTP_HOST", "must be a host name or IP address");
        ok = false;
    }

    let security = match p
        .get("SMTP_SECURITY")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("starttls") => SmtpSecurity::StartTls,
        Some("tls") => SmtpSecurity::Tls,
        Some("none") => SmtpSecurity::None,
        Some(_) => {
            p.error("SMTP_SECURITY", "must be starttls, tls or none");
            ok = false;
            SmtpSecurity::StartTls
        }
    };

    let port = match p.get("SMTP_PORT") {
        None => security.default_port(),
        Some(v) => match v.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                p.error("SMTP_PORT", "must be a port number from 1 to 65535");
                ok = false;
                0
            }
        },
    };

    let username = p.get("SMTP_USERNAME").map(str::to_owned);
    let password = p.raw("SMTP_PASSWORD").map(str::to_owned);
    let credentials = match (username, password) {
        (Some(u), Some(pw)) => Some((u, Secret::new(pw))),
        (Some(_), None) => {
            p.error("SMTP_PASSWORD", "is required when SMTP_USERNAME is set");
            ok = false;
            None
        }
        (None, Some(_)) => {
            p.error("SMTP_USERNAME", "is required when SMTP_PASSWORD is set");
            ok = false;
            None
        }
        (None, None) => None,
    };
    if credentials.is_some() && security == SmtpSecurity::None && !is_loopback_host(&host) {
        p.error(
            "SMTP_SECURITY",
            "none would send SMTP_PASSWORD in clear text to a non-loopback host; use starttls or tls",
        );
        ok = false;
    }

    let from = match p.get("SMTP_FROM") {
        None => {
            p.error("SMTP_FROM", "is required when SMTP_HOST is set");
            None
        }
        Some(v) => match v.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(e) => {
                p.error("SMTP_FROM", format!("is not a valid mailbox ({e})"));
                None
            }
        },
    };

    let mut to = Vec::new();
    match p.get("SMTP_TO").map(str::to_owned) {
        None => {
            p.error("SMTP_TO", "is required when SMTP_HOST is set");
            ok = false;
        }
        Some(list) => {
            for (i, entry) in list.split(',').map(str::trim).enumerate() {
                if entry.is_empty() {
                    continue;
                }
                match entry.parse::<Mailbox>() {
                    Ok(m) => to.push(m),
                    Err(e) => {
                        p.error(
                            "SMTP_TO",
                            format!("entry {} ({entry:?}) is not a valid mailbox ({e})", i + 1),
                        );
                        ok = false;
                    }
                }
            }
            if ok && to.is_empty() {
                p.error("SMTP_TO", "lists no recipient");
                ok = false;
            }
        }
    }

    let from = from?;
    if !ok {
        return None;
    }
    let mut redactor = Redactor::default();
    if let Some((_, pw)) = &credentials {
        redactor.add(pw.expose());
    }
    Some(Channel {
        inner: Inner::Email(EmailConfig {
            host,
            port,
            security,
            credentials,
            from,
            to,
        }),
        redactor,
    })
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
