//! Per-channel payloads. Pure functions, so they are tested without a network.

use serde_json::{Value, json};

use crate::Alert;

/// Discord embed colours.
pub(crate) const COLOR_RED: u32 = 0xE7_4C_3C;
pub(crate) const COLOR_GREEN: u32 = 0x2E_CC_71;
pub(crate) const COLOR_ORANGE: u32 = 0xE6_7E_22;
pub(crate) const COLOR_GREY: u32 = 0x95_A5_A6;
pub(crate) const COLOR_BLUE: u32 = 0x34_98_DB;

/// Cuts `s` to at most `max` characters, ending with "…" when cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary, ending with "…" when cut.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let limit = max.saturating_sub('…'.len_utf8());
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if i + c.len_utf8() > limit {
            break;
        }
        end = i + c.len_utf8();
    }
    let mut out = s[..end].to_owned();
    out.push('…');
    out
}

/// A single line: control characters (newlines included) become spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `occurred_at_ms` as RFC 3339 UTC (`2024-05-01T12:00:00.000Z`).
pub(crate) fn rfc3339_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

pub(crate) fn discord_color(alert: &Alert) -> u32 {
    if alert.maintenance {
        return COLOR_GREY;
    }
    match alert.state.as_str() {
        "down" => COLOR_RED,
        "recovered" => COLOR_GREEN,
        "reminder" => COLOR_ORANGE,
        _ => COLOR_BLUE,
    }
}

/// Discord webhook body. Limits: content 2000, embed title 256, description 4096.
/// Mentions are disabled so a target called `@everyone` pings nobody.
pub(crate) fn discord_body(alert: &Alert) -> Value {
    json!({
        "content": truncate_chars(&one_line(&alert.title), 2000),
        "allowed_mentions": { "parse": [] },
        "embeds": [{
            "title": truncate_chars(&one_line(&alert.title), 256),
            "description": truncate_chars(&alert.message, 4096),
            "color": discord_color(alert),
            "timestamp": rfc3339_utc(alert.occurred_at_ms),
            "footer": { "text": format!("Heartbeat · {} · {}", truncate_chars(&alert.target, 100), alert.state) },
        }],
    })
}

/// Slack's three characters that must be escaped in text.
pub(crate) fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Markdown to Slack mrkdwn: `**bold**` becomes `*bold*`; `&`, `<`, `>` escaped.
pub(crate) fn slack_mrkdwn(md: &str) -> String {
    slack_escape(&md.replace("**", "*"))
}

/// Slack incoming-webhook body: `text` (the notification fallback) plus a
/// header block and a mrkdwn section. Limits: header 150, section 3000.
pub(crate) fn slack_body(alert: &Alert) -> Value {
    let title = one_line(&alert.title);
    let message = slack_mrkdwn(&alert.message);
    json!({
        "text": truncate_chars(&format!("{}\n{}", slack_escape(&title), message), 3000),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": truncate_chars(&title, 150), "emoji": true } },
            { "type": "section", "text": { "type": "mrkdwn", "text": truncate_chars(&message, 3000) } },
        ],
    })
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A small, safe subset of Markdown to Telegram HTML: `**bold**` and
/// `` `code` `` become tags when closed on the same text; everything else
/// (`_`, `*`, `[`, ...) stays literal and escaped. The output is always
/// well-formed, whatever the input, so Telegram never rejects it.
pub(crate) fn telegram_html(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + 16);
    let mut rest = md;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
            && end > 0
        {
            out.push_str("<b>");
            out.push_str(&html_escape(&after[..end]));
            out.push_str("</b>");
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
            && end > 0
        {
            out.push_str("<code>");
            out.push_str(&html_escape(&after[..end]));
            out.push_str("</code>");
            rest = &after[end + 1..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push_str(&html_escape(c.encode_utf8(&mut [0; 4])));
        }
        rest = chars.as_str();
    }
    out
}

/// Telegram `sendMessage` body. Parse mode HTML (not Markdown: a target name
/// such as `db_primary` would break Telegram's Markdown parser and the whole
/// message would be refused). The text stays under Telegram's 4096 limit.
pub(crate) fn telegram_body(alert: &Alert, chat_id: &str, disable_notification: bool) -> Value {
    let chat: Value = match chat_id.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(chat_id),
    };
    let title = truncate_chars(&one_line(&alert.title), 256);
    let message = truncate_chars(&alert.message, 3000);
    let text = format!(
        "<b>{}</b>\n\n{}",
        html_escape(&title),
        telegram_html(&message)
    );
    json!({
        "chat_id": chat,
        "text": text,
        "parse_mode": "HTML",
        "disable_notification": disable_notification,
        "link_preview_options": { "is_disabled": true },
    })
}

/// ntfy priority: high when down (outside maintenance), low in maintenance.
pub(crate) fn ntfy_priority(alert: &Alert) -> &'static str {
    if alert.maintenance {
        "low"
    } else if alert.state == "down" {
        "high"
    } else {
        "default"
    }
}

/// ntfy tags: an emoji short code, then the state.
pub(crate) fn ntfy_tags(alert: &Alert) -> String {
    let emoji = match alert.state.as_str() {
        "down" => "rotating_light",
        "recovered" => "white_check_mark",
        "reminder" => "hourglass",
        "worker" => "gear",
        "connectivity" => "globe_with_meridians",
        _ => "bell",
    };
    let state: String = alert
        .state
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if state.is_empty() {
        emoji.to_owned()
    } else {
        format!("{emoji},{state}")
    }
}

/// A header value for any text: printable ASCII as is, anything else as an
/// RFC 2047 encoded word (ntfy decodes those).
pub(crate) fn header_text(s: &str) -> String {
    use base64::Engine as _;
    let line = one_line(s);
    if line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        line
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(line.as_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: &str) -> Alert {
        Alert {
            id: 7,
            target: "db_primary".into(),
            state: state.into(),
            reason: Some("HTTP 500".into()),
            title: "🔴 db_primary is DOWN".into(),
            message: "**db_primary** is down: `HTTP 500` <x> & y_z".into(),
            started_at_ms: Some(1_700_000_000_000),
            occurred_at_ms: 1_700_000_000_000,
            duration_s: None,
            latency_ms: None,
            maintenance: false,
            held_back: false,
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn telegram_html_is_escaped_and_balanced() {
        assert_eq!(
            telegram_html("**db_primary** is down: `HTTP 500` <x> & y_z"),
            "<b>db_primary</b> is down: <code>HTTP 500</code> &lt;x&gt; &amp; y_z"
        );
        assert_eq!(telegram_html("a ** b"), "a ** b");
        assert_eq!(telegram_html("****"), "****");
        assert_eq!(telegram_html("`"), "`");
        assert_eq!(telegram_html("**<b>**"), "<b>&lt;b&gt;</b>");
        assert_eq!(telegram_html("é_ü"), "é_ü");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate_chars("abcdef", 4), "abc…");
        assert_eq!(truncate_chars("abc", 4), "abc");
        assert_eq!(truncate_bytes("ééé", 5), "é…");
        assert_eq!(truncate_bytes("abc", 3), "abc");
    }

    #[test]
    fn discord_colours() {
        assert_eq!(discord_color(&alert("down")), COLOR_RED);
        assert_eq!(discord_color(&alert("recovered")), COLOR_GREEN);
        let mut m = alert("down");
        m.maintenance = true;
        assert_eq!(discord_color(&m), COLOR_GREY);
    }

    #[test]
    fn slack_mrkdwn_escapes() {
        assert_eq!(slack_mrkdwn("**a** <b> & c"), "*a* &lt;b&gt; &amp; c");
    }

    #[test]
    fn header_text_encodes_non_ascii() {
        assert_eq!(header_text("db is down"), "db is down");
        assert_eq!(header_text("a\nb"), "a b");
        let enc = header_text("🔴 down");
        assert!(
            enc.starts_with("=?UTF-8?B?") && enc.ends_with("?="),
            "{enc}"
        );
    }

    #[test]
    fn ntfy_priority_and_tags() {
        assert_eq!(ntfy_priority(&alert("down")), "high");
        assert_eq!(ntfy_priority(&alert("recovered")), "default");
        assert_eq!(ntfy_tags(&alert("down")), "rotating_light,down");
        assert_eq!(ntfy_tags(&alert("recovered")), "white_check_mark,recovered");
    }
}
