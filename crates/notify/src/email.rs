//! E-mail over SMTP (lettre, tokio, rustls).

use std::error::Error as StdError;
use std::time::Duration;

use lettre::message::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{EmailConfig, SmtpSecurity};
use crate::error::{DeliveryErrorKind, Redactor};
use crate::{Alert, Delivered, format};

pub(crate) fn build_message(
    cfg: &EmailConfig,
    alert: &Alert,
) -> Result<Message, DeliveryErrorKind> {
    let mut builder = Message::builder()
        .from(cfg.from.clone())
        .subject(format::one_line(&alert.title))
        .header(ContentType::TEXT_PLAIN)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Heartbeat-Alert-Id"),
            alert.id.to_string(),
        ));
    for to in &cfg.to {
        builder = builder.to(to.clone());
    }
    builder
        .body(alert.message.clone())
        .map_err(|e| DeliveryErrorKind::Request(format!("e-mail message: {e}")))
}

pub(crate) async fn send(
    cfg: &EmailConfig,
    alert: &Alert,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Delivered, DeliveryErrorKind> {
    let message = build_message(cfg, alert)?;
    let tls_params = || {
        TlsParameters::new(cfg.host.clone())
            .map_err(|e| DeliveryErrorKind::Tls(redactor.redact(&smtp_text(&e))))
    };
    let tls = match cfg.security {
        SmtpSecurity::StartTls => Tls::Required(tls_params()?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_params()?),
        SmtpSecurity::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some((user, password)) = &cfg.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    let transport = builder.build();
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Err(_) => Err(DeliveryErrorKind::Timeout(timeout)),
        Ok(Ok(response)) => Ok(Delivered {
            status: Some(u16::from(response.code())),
        }),
        Ok(Err(e)) => Err(classify(&e, timeout, redactor)),
    }
}

/// The error and its sources as one line.
fn smtp_text(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn classify(
    e: &lettre::transport::smtp::Error,
    timeout: Duration,
    redactor: &Redactor,
) -> DeliveryErrorKind {
    let text = format::truncate_chars(&redactor.redact(&smtp_text(e)), 300);
    if e.is_timeout() {
        return DeliveryErrorKind::Timeout(timeout);
    }
    if e.is_permanent() || e.is_transient() {
        return DeliveryErrorKind::Smtp {
            code: e.status().map(u16::from),
            permanent: e.is_permanent(),
            message: text,
        };
    }
    if e.is_tls() {
        return DeliveryErrorKind::Tls(text);
    }
    if e.is_client() && text.contains("STARTTLS") {
        return DeliveryErrorKind::Tls(format!(
            "the server does not offer STARTTLS (SMTP_SECURITY=starttls requires it): {text}"
        ));
    }
    if let Some(kind_text) = crate::http::io_text(e) {
        return DeliveryErrorKind::Connect(kind_text.to_owned());
    }
    let timed_out = crate::http::error_chain(e).into_iter().any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    if timed_out {
        return DeliveryErrorKind::Timeout(timeout);
    }
    DeliveryErrorKind::Network(text)
}
