//! Shields-style SVG badges.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use heartbeat_core::Status;

pub(crate) const GREEN: &str = "#22c55e";
pub(crate) const RED: &str = "#ef4444";
pub(crate) const ORANGE: &str = "#f97316";
pub(crate) const YELLOW: &str = "#eab308";
pub(crate) const GREY: &str = "#6b7280";

pub(crate) fn status_color(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Healthy) => GREEN,
        Some(Status::Down) => RED,
        Some(Status::Error) => ORANGE,
        Some(Status::Timeout) => YELLOW,
        Some(Status::Unknown) | None => GREY,
    }
}

pub(crate) fn uptime_color(pct: Option<f64>) -> &'static str {
    match pct {
        Some(p) if p >= 99.0 => GREEN,
        Some(p) if p >= 95.0 => YELLOW,
        Some(_) => RED,
        None => GREY,
    }
}

pub(crate) fn latency_color(ms: Option<f64>) -> &'static str {
    match ms {
        Some(m) if m <= 300.0 => GREEN,
        Some(m) if m <= 1000.0 => YELLOW,
        Some(_) => ORANGE,
        None => GREY,
    }
}

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 does not allow at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Approximate text width in px for 11 px Verdana-like fonts.
fn width(text: &str) -> usize {
    text.chars().count() * 7 + 10
}

pub(crate) fn svg(label: &str, message: &str, color: &str) -> String {
    let (lw, mw) = (width(label), width(message));
    let total = lw + mw;
    let (label, message) = (xml_escape(label), xml_escape(message));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" \
aria-label=\"{label}: {message}\"><title>{label}: {message}</title>\
<rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
<rect x=\"{lw}\" width=\"{mw}\" height=\"20\" fill=\"{color}\"/>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
<text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{mx}\" y=\"14\">{message}</text></g></svg>",
        lx = lw / 2,
        mx = lw + mw / 2,
    )
}

pub(crate) fn response(label: &str, message: &str, color: &str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
        ],
        svg(label, message, color),
    )
        .into_response()
}
