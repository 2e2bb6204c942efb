//! Channel configuration from an environment-style map.

mod common;

use std::collections::BTreeSet;

use common::env;
use heartbeat_notify::{CHANNEL_VARIABLES, ChannelKind, channels_from_map};

fn error_vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    match channels_from_map(&env(pairs)) {
        Ok(chans) => panic!("expected errors, got {chans:?}"),
        Err(errs) => errs.into_iter().map(|e| (e.variable, e.message)).collect(),
    }
}

fn assert_single_error(pairs: &[(&str, &str)], variable: &str) -> String {
    let errs = error_vars(pairs);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, variable, "{errs:?}");
    errs[0].1.clone()
}

#[test]
fn nothing_configured_is_no_channel() {
    assert!(channels_from_map(&env(&[])).expect("ok").is_empty());
    // Blank values count as unset; unrelated variables are ignored.
    let chans = channels_from_map(&env(&[
        ("N8N_WEBHOOK_URL", ""),
        ("SMTP_HOST", "  "),
        ("PATH", "/usr/bin"),
    ]))
    .expect("ok");
    assert!(chans.is_empty());
}

#[test]
fn every_channel_at_once() {
    let chans = channels_from_map(&env(&[
        ("N8N_WEBHOOK_URL", "https://n8n.example.com/webhook/abc"),
        ("WEBHOOK_URL", "http://hooks.example.com:8080/in"),
        ("WEBHOOK_SECRET", "hmac-key-value"),
        (
            "DISCORD_WEBHOOK_URL",
            "https://discord.com/api/webhooks/1/tok",
        ),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/X",
        ),
        ("TELEGRAM_BOT_TOKEN", "123:abc"),
        ("TELEGRAM_CHAT_ID", "42"),
        ("NTFY_URL", "https://ntfy.sh/topic"),
        ("NTFY_TOKEN", "tk_abc"),
        ("SMTP_HOST", "smtp.example.com"),
        ("SMTP_USERNAME", "me"),
        ("SMTP_PASSWORD", "pw pw "),
        ("SMTP_FROM", "Heartbeat <hb@example.com>"),
        ("SMTP_TO", "a@example.com, b@example.com,"),
    ]))
    .expect("valid");
    let names: Vec<_> = chans.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "n8n", "webhook", "discord", "slack", "telegram", "ntfy", "email"
        ]
    );
    let kinds: Vec<_> = chans.iter().map(|c| c.kind()).collect();
    assert_eq!(kinds, ChannelKind::ALL);
    assert_eq!(
        chans[6].summary(),
        "email -> smtp.example.com:587 (starttls), 2 recipient(s)"
    );
    assert_eq!(chans[0].summary(), "n8n -> https://n8n.example.com");
    assert_eq!(
        chans[1].summary(),
        "webhook -> http://hooks.example.com:8080 (signed)"
    );
    let debug = format!("{chans:?}");
    for secret in [
        "webhook/abc",
        "hmac-key-value",
        "/tok",
        "T/B/X",
        "123:abc",
        "tk_abc",
        "pw pw",
        "/topic",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn smtp_port_defaults_follow_security() {
    let base = [
        ("SMTP_HOST", "mail.local"),
        ("SMTP_FROM", "hb@example.com"),
        ("SMTP_TO", "ops@example.com"),
    ];
    let summary = |extra: &[(&str, &str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        let chans = channels_from_map(&env(&pairs)).expect("valid");
        chans[0].summary()
    };
    assert!(summary(&[]).contains(":587 (starttls)"));
    assert!(summary(&[("SMTP_SECURITY", "TLS")]).contains(":465 (tls)"));
    assert!(summary(&[("SMTP_SECURITY", "none")]).contains(":25 (none)"));
    assert!(summary(&[("SMTP_SECURITY", "none"), ("SMTP_PORT", "2525")]).contains(":2525 (none)"));
}

#[test]
fn each_bad_value_names_its_variable() {
    let m = assert_single_error(
        &[("N8N_WEBHOOK_URL", "n8n.example.com/webhook/x")],
        "N8N_WEBHOOK_URL",
    );
    assert!(m.contains("scheme"), "{m}");
    assert_single_error(&[("WEBHOOK_URL", "ftp://example.com/x")], "WEBHOOK_URL");
    assert_single_error(
        &[("DISCORD_WEBHOOK_URL", "https://")],
        "DISCORD_WEBHOOK_URL",
    );
    assert_single_error(
        &[("SLACK_WEBHOOK_URL", "file:///etc/passwd")],
        "SLACK_WEBHOOK_URL",
    );
    assert_single_error(&[("WEBHOOK_SECRET", "k")], "WEBHOOK_SECRET");
    assert_single_error(&[("TELEGRAM_CHAT_ID", "42")], "TELEGRAM_BOT_TOKEN");
    assert_single_error(&[("TELEGRAM_BOT_TOKEN", "1:a")], "TELEGRAM_CHAT_ID");
    assert_single_error(
        &[
            ("TELEGRAM_BOT_TOKEN", "not a token"),
            ("TELEGRAM_CHAT_ID", "1"),
        ],
        "TELEGRAM_BOT_TOKEN",
    );
    assert_single_error(
        &[
            ("TELEGRAM_BOT_TOKEN", "1:a"),
            ("TELEGRAM_CHAT_ID", "my chat"),
        ],
        "TELEGRAM_CHAT_ID",
    );
    assert_single_error(
        &[
            ("TELEGRAM_BOT_TOKEN", "1:a"),
            ("TELEGRAM_CHAT_ID", "1"),
            ("TELEGRAM_API_URL", "api.telegram.org"),
        ],
        "TELEGRAM_API_URL",
    );
    let m = assert_single_error(
        &[
            ("TELEGRAM_BOT_TOKEN", "1:a"),
            ("TELEGRAM_CHAT_ID", "1"),
            ("TELEGRAM_DISABLE_NOTIFICATION", "maybe"),
        ],
        "TELEGRAM_DISABLE_NOTIFICATION",
    );
    assert!(m.contains("boolean"), "{m}");
    assert_single_error(&[("NTFY_TOKEN", "tk")], "NTFY_TOKEN");
    assert_single_error(&[("NTFY_URL", "https://ntfy.sh/")], "NTFY_URL");
    assert_single_error(&[("SMTP_PORT", "25")], "SMTP_PORT");
    let smtp = [
        ("SMTP_HOST", "smtp.example.com"),
        ("SMTP_FROM", "hb@example.com"),
        ("SMTP_TO", "ops@example.com"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = smtp.to_vec();
        v.extend_from_slice(extra);
        v
    };
    for (pairs, var) in [
        (with(&[("SMTP_PORT", "99999")]), "SMTP_PORT"),
        (with(&[("SMTP_PORT", "0")]), "SMTP_PORT"),
        (with(&[("SMTP_PORT", "smtp")]), "SMTP_PORT"),
        (with(&[("SMTP_SECURITY", "ssl3")]), "SMTP_SECURITY"),
        (with(&[("SMTP_USERNAME", "me")]), "SMTP_PASSWORD"),
        (with(&[("SMTP_PASSWORD", "pw")]), "SMTP_USERNAME"),
        (
            with(&[
                ("SMTP_USERNAME", "me"),
                ("SMTP_PASSWORD", "pw"),
                ("SMTP_SECURITY", "none"),
            ]),
            "SMTP_SECURITY",
        ),
        (
            with(&[("SMTP_TO", "ops@example.com, not-an-address")]),
            "SMTP_TO",
        ),
        (with(&[("SMTP_TO", " , ")]), "SMTP_TO"),
        (with(&[("SMTP_FROM", "nobody")]), "SMTP_FROM"),
    ] {
        assert_single_error(&pairs, var);
    }
    // Missing companions of SMTP_HOST.
    let errs = error_vars(&[("SMTP_HOST", "smtp.example.com")]);
    let vars: BTreeSet<_> = errs.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(vars, BTreeSet::from(["SMTP_FROM", "SMTP_TO"]));
    // Plain-text credentials are fine towards a loopback relay.
    channels_from_map(&env(&[
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_SECURITY", "none"),
        ("SMTP_USERNAME", "me"),
        ("SMTP_PASSWORD", "pw"),
        ("SMTP_FROM", "hb@example.com"),
        ("SMTP_TO", "ops@example.com"),
    ]))
    .expect("loopback relay");
}

#[test]
fn all_errors_are_reported_together_without_secrets() {
    let errs = error_vars(&[
        ("N8N_WEBHOOK_URL", "n8n.example.com/webhook/SECRET-N8N"),
        (
            "WEBHOOK_URL",
            "ftp://user:SECRET-PW@example.com/SECRET-PATH",
        ),
        ("WEBHOOK_SECRET", "SECRET-HMAC"),
        (
            "DISCORD_WEBHOOK_URL",
            "https://discord.com/api/webhooks/1/SECRET-DISCORD",
        ),
        ("TELEGRAM_CHAT_ID", "42"),
        ("TELEGRAM_API_URL", "https://api.telegram.org"),
        ("NTFY_URL", "https://ntfy.sh/SECRET-TOPIC"),
        ("NTFY_TOKEN", "SECRET TOKEN"),
        ("SMTP_HOST", "smtp.example.com"),
        ("SMTP_PORT", "70000"),
        ("SMTP_SECURITY", "ssl"),
        ("SMTP_PASSWORD", "SECRET-SMTP"),
        ("SMTP_FROM", "hb@example.com"),
        ("SMTP_TO", "ops@example.com"),
    ]);
    let vars: BTreeSet<_> = errs.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        vars,
        BTreeSet::from([
            "N8N_WEBHOOK_URL",
            "WEBHOOK_URL",
            "TELEGRAM_BOT_TOKEN",
            "NTFY_TOKEN",
            "SMTP_PORT",
            "SMTP_SECURITY",
            "SMTP_USERNAME",
        ]),
        "{errs:?}"
    );
    for (var, msg) in &errs {
        assert!(!msg.contains("SECRET"), "{var}: {msg}");
    }
    let Err(errs) = channels_from_map(&env(&[("WEBHOOK_URL", "ftp://SECRET@x/")])) else {
        panic!("expected an error");
    };
    assert_eq!(
        errs[0].to_string(),
        "WEBHOOK_URL: must be an http:// or https:// URL (value not shown: it may hold a token)"
    );
    assert!(!format!("{errs:?}").contains("SECRET"));
}

#[test]
fn variables_are_documented_once() {
    let names: Vec<&str> = CHANNEL_VARIABLES.iter().map(|(n, _, _)| *n).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len());
    for var in [
        "N8N_WEBHOOK_URL",
        "WEBHOOK_URL",
        "WEBHOOK_SECRET",
        "DISCORD_WEBHOOK_URL",
        "SLACK_WEBHOOK_URL",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_CHAT_ID",
        "TELEGRAM_API_URL",
        "TELEGRAM_DISABLE_NOTIFICATION",
        "NTFY_URL",
        "NTFY_TOKEN",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_SECURITY",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "SMTP_FROM",
        "SMTP_TO",
    ] {
        assert!(unique.contains(var), "{var} undocumented");
    }
    assert_eq!(unique.len(), 18);
    for (name, _, description) in CHANNEL_VARIABLES {
        assert!(!description.is_empty(), "{name}");
    }
}
