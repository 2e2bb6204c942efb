//! The frontend in `apps/dashboard/assets/`, embedded at build time (see `build.rs`).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Shown at `/` when the build embedded no `index.html`.
const PLACEHOLDER: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<title>Heartbeat</title></head><body><h1>Heartbeat</h1>\
<p>The web UI is not built into this binary. The API is available: \
<a href=\"/api/live\">/api/live</a>, <a href=\"/api/openapi.json\">/api/openapi.json</a>, \
<a href=\"/health\">/health</a>.</p></body></html>";

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, body: &'static [u8]) -> Response {
    // HTML revalidates every time (it names the other files); the rest may be cached briefly.
    let cache = if path.ends_with(".html") {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// An embedded file by its path below `assets/`; `i18n/index.json` is the language list.
pub(crate) fn lookup(path: &str) -> Option<Response> {
    if path == LANGUAGES {
        return Some(serve(path, languages()));
    }
    ASSETS
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(name, body)| serve(name, body))
}

const LANGUAGES: &str = "i18n/index.json";

/// `[{"code": "en", "name": "English"}, ...]` for every embedded `i18n/<code>.json`, with the
/// name from its `"lang.name"` key (the code when missing), so adding a language is adding
/// one file. Built once.
fn languages() -> &'static [u8] {
    static LIST: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        let list: Vec<serde_json::Value> = ASSETS
            .iter()
            .filter_map(|(name, body)| {
                let code = name.strip_prefix("i18n/")?.strip_suffix(".json")?;
                if code.contains('/') || code == "index" {
                    return None;
                }
                let dict: serde_json::Value = serde_json::from_slice(body).ok()?;
                let label = dict
                    .get("lang.name")
                    .and_then(|v| v.as_str())
                    .unwrap_or(code);
                Some(serde_json::json!({"code": code, "name": label}))
            })
            .collect();
        serde_json::to_vec(&list).unwrap_or_else(|_| b"[]".to_vec())
    })
}

pub(crate) async fn index() -> Response {
    lookup("index.html").unwrap_or_else(|| {
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            PLACEHOLDER,
        )
            .into_response()
    })
}

pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    lookup(&path).unwrap_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({"error": "no such asset"})),
        )
            .into_response()
    })
}

/// Paths of the embedded files (for tests and logs).
pub fn embedded() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(name, _)| *name)
}
