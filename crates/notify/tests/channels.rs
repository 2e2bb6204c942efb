//! Every HTTP channel against a local receiver that checks the exact request.

mod common;

use std::time::{Duration, Instant};

use common::*;
use heartbeat_notify::{Alert, DeliveryErrorKind, Notifier, NotifierOptions, channels_from_map};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn n8n_gets_title_message_and_structured_fields() {
    let mut rx = ok_receiver().await;
    let ch = channel(&[("N8N_WEBHOOK_URL", &rx.url("/webhook/abc-secret-path"))]);
    assert_eq!(ch.name(), "n8n");
    let alert = down_alert();
    let d = notifier().deliver(&ch, &alert, T).await.expect("delivered");
    assert_eq!(d.status, Some(200));

    let req = rx.request().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/webhook/abc-secret-path");
    assert_eq!(req.query, None);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("idempotency-key"), Some("42"));
    assert_eq!(req.header("x-heartbeat-alert-id"), Some("42"));
    assert_eq!(req.header("x-heartbeat-signature"), None);
    let body = req.json();
    // What the replaced system sent...
    assert_eq!(body["title"], "🔴 db_primary is DOWN");
    assert_eq!(body["message"], alert.message);
    // ...plus the structured fields.
    assert_eq!(body["id"], 42);
    assert_eq!(body["target"], "db_primary");
    assert_eq!(body["state"], "down");
    assert_eq!(body["reason"], "HTTP 500");
    assert_eq!(body["started_at_ms"], 1_700_000_000_000_i64);
    assert_eq!(body["occurred_at_ms"], 1_700_000_060_000_i64);
    assert_eq!(body["duration_s"], 60.0);
    assert_eq!(body["latency_ms"], serde_json::Value::Null);
    assert_eq!(body["maintenance"], false);
    assert_eq!(body["held_back"], false);
    assert!(rx.no_more_requests());
}

#[tokio::test]
async fn webhook_sends_full_alert_with_verifiable_hmac() {
    let mut rx = receiver(204, "text/plain", "").await;
    let key = "whsec-very-secret-key";
    let ch = channel(&[
        ("WEBHOOK_URL", &rx.url("/hooks/heartbeat?tenant=7")),
        ("WEBHOOK_SECRET", key),
    ]);
    assert_eq!(ch.name(), "webhook");
    assert!(!format!("{ch:?}").contains(key));
    let alert = recovered_alert();
    let d = notifier().deliver(&ch, &alert, T).await.expect("delivered");
    assert_eq!(d.status, Some(204));

    let req = rx.request().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hooks/heartbeat");
    assert_eq!(req.query.as_deref(), Some("tenant=7"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("idempotency-key"), Some("43"));
    assert_eq!(req.header("x-heartbeat-alert-id"), Some("43"));

    // Recompute the signature over the exact bytes received.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(&req.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(req.header("x-heartbeat-signature"), Some(expected.as_str()));
    assert_eq!(
        heartbeat_notify::signature_hex(key.as_bytes(), &req.body),
        expected["sha256=".len()..]
    );

    let got: Alert = serde_json::from_slice(&req.body).expect("full alert");
    assert_eq!(got, alert);
}

#[tokio::test]
async fn webhook_without_secret_has_no_signature() {
    let mut rx = ok_receiver().await;
    let ch = channel(&[("WEBHOOK_URL", &rx.url("/h"))]);
    notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect("delivered");
    let req = rx.request().await;
    assert_eq!(req.header("x-heartbeat-signature"), None);
    assert_eq!(req.json()["state"], "down");
}

#[tokio::test]
async fn discord_embed_red_when_down_green_when_recovered() {
    let mut rx = receiver(204, "text/plain", "").await;
    let ch = channel(&[(
        "DISCORD_WEBHOOK_URL",
        &rx.url("/api/webhooks/123/discord-token-xyz"),
    )]);
    assert_eq!(ch.name(), "discord");
    let n = notifier();
    n.deliver(&ch, &down_alert(), T).await.expect("down");
    n.deliver(&ch, &recovered_alert(), T)
        .await
        .expect("recovered");

    let req = rx.request().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/webhooks/123/discord-token-xyz");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    assert_eq!(body["content"], "🔴 db_primary is DOWN");
    assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    let embed = &body["embeds"][0];
    assert_eq!(embed["title"], "🔴 db_primary is DOWN");
    assert_eq!(embed["description"], down_alert().message);
    assert_eq!(embed["color"], 0xE7_4C_3C);
    assert_eq!(embed["timestamp"], "2023-11-14T22:14:20.000Z");

    let body = rx.request().await.json();
    assert_eq!(body["embeds"][0]["color"], 0x2E_CC_71);
    assert_eq!(body["embeds"][0]["title"], "✅ db_primary recovered");
}

#[tokio::test]
async fn slack_text_and_blocks() {
    let mut rx = ok_receiver().await;
    let ch = channel(&[("SLACK_WEBHOOK_URL", &rx.url("/services/T0/B0/slacksecret"))]);
    assert_eq!(ch.name(), "slack");
    notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect("delivered");
    let req = rx.request().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/services/T0/B0/slacksecret");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    let text = body["text"].as_str().expect("text");
    assert!(text.starts_with("🔴 db_primary is DOWN\n"), "{text}");
    // Markdown bold becomes mrkdwn bold, and &, <, > are escaped.
    assert!(
        text.contains("*db_primary* is down: `HTTP 500` since 12:00 &lt;b&gt;&amp;&lt;/b&gt;"),
        "{text}"
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["blocks"][0]["text"]["text"], "🔴 db_primary is DOWN");
    assert_eq!(body["blocks"][1]["type"], "section");
    assert_eq!(body["blocks"][1]["text"]["type"], "mrkdwn");
}

#[tokio::test]
async fn telegram_send_message_html() {
    let mut rx = receiver(200, "application/json", r#"{"ok":true,"result":{}}"#).await;
    let token = "123456:ABC-def_ghiSECRET";
    let ch = channel(&[
        ("TELEGRAM_BOT_TOKEN", token),
        ("TELEGRAM_CHAT_ID", "-1001234567890"),
        ("TELEGRAM_API_URL", &rx.url("")),
    ]);
    assert_eq!(ch.name(), "telegram");
    assert!(!format!("{ch:?}").contains("SECRET"));
    notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect("delivered");
    let req = rx.request().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("/bot{token}/sendMessage"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    assert_eq!(body["chat_id"], -1_001_234_567_890_i64);
    assert_eq!(body["parse_mode"], "HTML");
    assert_eq!(body["disable_notification"], false);
    assert_eq!(
        body["text"],
        "<b>🔴 db_primary is DOWN</b>\n\n<b>db_primary</b> is down: <code>HTTP 500</code> since 12:00 &lt;b&gt;&amp;&lt;/b&gt;"
    );
}

#[tokio::test]
async fn telegram_channel_username_and_silent() {
    let mut rx = receiver(200, "application/json", r#"{"ok":true}"#).await;
    let ch = channel(&[
        ("TELEGRAM_BOT_TOKEN", "1:x"),
        ("TELEGRAM_CHAT_ID", "@my_alerts"),
        ("TELEGRAM_API_URL", &rx.url("/tgapi/")),
        ("TELEGRAM_DISABLE_NOTIFICATION", "yes"),
    ]);
    notifier()
        .deliver(&ch, &recovered_alert(), T)
        .await
        .expect("delivered");
    let req = rx.request().await;
    assert_eq!(req.path, "/tgapi/bot1:x/sendMessage");
    let body = req.json();
    assert_eq!(body["chat_id"], "@my_alerts");
    assert_eq!(body["disable_notification"], true);
}

#[tokio::test]
async fn telegram_error_never_shows_the_token() {
    let mut rx = receiver(
        401,
        "application/json",
        r#"{"ok":false,"error_code":401,"description":"Unauthorized for bot123456:ABC-def_ghiSECRET"}"#,
    )
    .await;
    let token = "123456:ABC-def_ghiSECRET";
    let ch = channel(&[
        ("TELEGRAM_BOT_TOKEN", token),
        ("TELEGRAM_CHAT_ID", "5"),
        ("TELEGRAM_API_URL", &rx.url("")),
    ]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("401 is a failure");
    let _ = rx.request().await;
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    let shown = format!("{err} {err:?}");
    assert!(shown.starts_with("telegram: HTTP 401"), "{shown}");
    assert!(!shown.contains("ghiSECRET"), "{shown}");
    assert!(!shown.contains(token), "{shown}");
}

#[tokio::test]
async fn ntfy_headers_body_and_bearer() {
    let mut rx = ok_receiver().await;
    let ch = channel(&[
        ("NTFY_URL", &rx.url("/mytopic")),
        ("NTFY_TOKEN", "tk_ntfysecret"),
    ]);
    assert_eq!(ch.name(), "ntfy");
    let alert = Alert {
        title: "db_primary is DOWN".into(),
        ..down_alert()
    };
    notifier().deliver(&ch, &alert, T).await.expect("delivered");
    let req = rx.request().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/mytopic");
    assert_eq!(req.header("authorization"), Some("Bearer tk_ntfysecret"));
    assert_eq!(req.header("title"), Some("db_primary is DOWN"));
    assert_eq!(req.header("priority"), Some("high"));
    assert_eq!(req.header("tags"), Some("rotating_light,down"));
    assert_eq!(req.header("markdown"), Some("yes"));
    assert_eq!(req.header("idempotency-key"), Some("42"));
    assert_eq!(
        req.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(String::from_utf8(req.body).expect("utf-8"), alert.message);
}

#[tokio::test]
async fn ntfy_non_ascii_title_is_rfc2047_and_no_token_no_auth() {
    let mut rx = ok_receiver().await;
    let ch = channel(&[("NTFY_URL", &rx.url("/t"))]);
    notifier()
        .deliver(&ch, &recovered_alert(), T)
        .await
        .expect("delivered");
    let req = rx.request().await;
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("priority"), Some("default"));
    assert_eq!(req.header("tags"), Some("white_check_mark,recovered"));
    let title = req.header("title").expect("title");
    use base64::Engine as _;
    let b64 = title
        .strip_prefix("=?UTF-8?B?")
        .and_then(|t| t.strip_suffix("?="))
        .expect("encoded word");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(
        String::from_utf8(decoded).expect("utf-8"),
        "✅ db_primary recovered"
    );
}

#[tokio::test]
async fn http_500_is_a_retryable_failure_not_sent_and_redacted() {
    // The receiver echoes the secret path back; the error must not.
    let mut rx = receiver(
        500,
        "text/plain",
        "internal error for /webhook/abc-secret-path",
    )
    .await;
    let ch = channel(&[("N8N_WEBHOOK_URL", &rx.url("/webhook/abc-secret-path"))]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("500 is not sent");
    let _ = rx.request().await;
    assert_eq!(err.channel, "n8n");
    assert_eq!(err.status(), Some(500));
    assert!(err.is_retryable());
    assert!(matches!(
        err.kind,
        DeliveryErrorKind::Status { status: 500, .. }
    ));
    let shown = format!("{err} | {err:?}");
    assert!(
        shown.starts_with("n8n: HTTP 500: internal error for <redacted>"),
        "{shown}"
    );
    assert!(!shown.contains("abc-secret-path"), "{shown}");
    assert!(!shown.contains("127.0.0.1"), "{shown}");
}

#[tokio::test]
async fn http_404_is_a_permanent_failure() {
    let mut rx = receiver(404, "text/html", "<html>not found</html>").await;
    let ch = channel(&[("SLACK_WEBHOOK_URL", &rx.url("/services/x/y/zzzzzz"))]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("404");
    let _ = rx.request().await;
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "slack: HTTP 404");
}

#[tokio::test]
async fn http_429_and_redirects() {
    let mut rx = receiver(429, "application/json", r#"{"retry_after": 3}"#).await;
    let ch = channel(&[("WEBHOOK_URL", &rx.url("/a"))]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("429");
    let _ = rx.request().await;
    assert!(err.is_retryable());
    assert_eq!(err.to_string(), r#"webhook: HTTP 429: {"retry_after": 3}"#);

    let mut rx = receiver(302, "text/plain", "").await;
    let ch = channel(&[("WEBHOOK_URL", &rx.url("/a"))]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("redirect is not followed");
    let _ = rx.request().await;
    assert_eq!(err.status(), Some(302));
    assert_eq!(
        err.to_string(),
        "webhook: HTTP 302: redirects are not followed"
    );
    assert!(rx.no_more_requests());
}

#[tokio::test]
async fn closed_port_is_a_connection_error() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/api/webhooks/1/discord-secret-token");
    let ch = channel(&[("DISCORD_WEBHOOK_URL", &url)]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&err.kind, DeliveryErrorKind::Connect(_)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "discord: connection refused");
    assert!(err.is_retryable());
    assert_eq!(err.status(), None);
    assert!(!format!("{err:?}").contains("discord-secret-token"));
}

#[tokio::test]
async fn hanging_receiver_times_out_within_the_timeout() {
    let addr = hanging_receiver().await;
    let ch = channel(&[
        ("NTFY_URL", &format!("http://{addr}/topic-secret")),
        ("NTFY_TOKEN", "tk_hang_secret"),
    ]);
    let timeout = Duration::from_millis(700);
    let start = Instant::now();
    let err = notifier()
        .deliver(&ch, &down_alert(), timeout)
        .await
        .expect_err("no answer");
    let elapsed = start.elapsed();
    assert!(
        matches!(err.kind, DeliveryErrorKind::Timeout(t) if t == timeout),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(650), "{elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_millis(500),
        "{elapsed:?}"
    );
    assert!(err.is_retryable());
    let shown = format!("{err} {err:?}");
    assert_eq!(err.to_string(), "ntfy: timed out after 700ms");
    assert!(!shown.contains("secret"), "{shown}");
}

#[tokio::test]
async fn deliver_all_reports_each_channel() {
    let mut ok = ok_receiver().await;
    let mut bad = receiver(503, "text/plain", "busy").await;
    let chans = channels_from_map(&env(&[
        ("N8N_WEBHOOK_URL", &ok.url("/n8n")),
        ("WEBHOOK_URL", &bad.url("/hook")),
    ]))
    .expect("config");
    let n = Notifier::with_options(
        chans,
        &NotifierOptions {
            use_system_proxy: false,
            ..NotifierOptions::default()
        },
    )
    .expect("notifier");
    assert_eq!(n.channels().len(), 2);
    assert!(n.channel("webhook").is_some());
    let out = n.deliver_all(&down_alert(), T).await;
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].channel, "n8n");
    assert_eq!(
        out[0].result.as_ref().ok().and_then(|d| d.status),
        Some(200)
    );
    assert_eq!(out[1].channel, "webhook");
    let err = out[1].result.as_ref().expect_err("503");
    assert_eq!(err.to_string(), "webhook: HTTP 503: busy");
    let _ = ok.request().await;
    let _ = bad.request().await;
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let rx = ok_receiver().await;
    let url = format!("https://{}/hook/tls-secret-path", rx.addr);
    let ch = channel(&[("WEBHOOK_URL", &url)]);
    let err = notifier()
        .deliver(&ch, &down_alert(), T)
        .await
        .expect_err("no TLS there");
    assert!(matches!(&err.kind, DeliveryErrorKind::Tls(_)), "{err:?}");
    assert!(err.to_string().starts_with("webhook: TLS error: "), "{err}");
    assert!(!err.is_retryable());
    assert!(!format!("{err:?}").contains("tls-secret-path"));
}

#[test]
fn notifier_debug_shows_no_secret() {
    let chans = channels_from_map(&env(&[
        ("WEBHOOK_URL", "https://h.example.com/in/path-secret"),
        ("WEBHOOK_SECRET", "hmac-secret"),
        ("TELEGRAM_BOT_TOKEN", "1:tg-secret"),
        ("TELEGRAM_CHAT_ID", "1"),
    ]))
    .expect("config");
    let n = Notifier::new(chans).expect("notifier");
    let shown = format!("{n:?}");
    assert!(
        shown.contains("webhook -> https://h.example.com (signed)"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
}
