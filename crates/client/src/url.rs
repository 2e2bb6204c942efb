//! Building request URLs from the URL a user configured, and showing them without secrets.

use url::Url;

use crate::ClientError;

/// Path segments that are part of the API's shape, never a secret; every other
/// segment may be a token and is shown as `<redacted>`.
const PUBLIC_SEGMENTS: &[&str] = &[
    "ping",
    "start",
    "fail",
    "log",
    "api",
    "push",
    "heartbeat",
    "services",
    "progress",
    "tasks",
    "complete",
    "health",
];

/// Parses a user-supplied http(s) URL; `field` names it in the error.
pub fn parse_url(field: &'static str, text: &str) -> Result<Url, ClientError> {
    let url = Url::parse(text.trim()).map_err(|e| ClientError::InvalidInput {
        field,
        reason: format!("not a URL ({e})"),
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(ClientError::InvalidInput {
                field,
                reason: format!("scheme {other:?} is not http or https"),
            });
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ClientError::InvalidInput {
            field,
            reason: "has no host".into(),
        });
    }
    if url.cannot_be_a_base() {
        return Err(ClientError::InvalidInput {
            field,
            reason: "cannot have a path".into(),
        });
    }
    Ok(url)
}

fn is_public(segment: &str) -> bool {
    PUBLIC_SEGMENTS.contains(&segment) || (segment.len() <= 3 && segment.parse::<u16>().is_ok())
}

/// `url` as it may appear in logs and errors: no user-info, no query, and every
/// path segment that might be a token replaced by `<redacted>`.
pub fn redact_url(url: &Url) -> String {
    let mut out = format!("{}://", url.scheme());
    out.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    for segment in url.path_segments().into_iter().flatten() {
        out.push('/');
        if segment.is_empty() || is_public(segment) {
            out.push_str(segment);
        } else {
            out.push_str("<redacted>");
        }
    }
    out
}

/// Removes every possibly secret path segment of `url` from `text` (a server's answer
/// may echo the request path).
pub(crate) fn scrub(text: &str, url: &Url) -> String {
    let mut out = text.to_owned();
    for segment in url.path_segments().into_iter().flatten() {
        if segment.len() >= 4 && !is_public(segment) {
            out = out.replace(segment, "<redacted>");
        }
    }
    out
}

/// `url` with `segments` appended to its path; the query is kept.
pub(crate) fn join(url: &Url, segments: &[&str]) -> Url {
    let mut out = url.clone();
    if let Ok(mut path) = out.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    out
}

/// `url` with `key=value` added to (or replaced in) its query.
pub(crate) fn with_query(url: &Url, pairs: &[(&str, String)]) -> Url {
    let mut out = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !pairs.iter().any(|(p, _)| p == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = out.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    if out.query() == Some("") {
        out.set_query(None);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_tokens_and_queries() {
        let url = Url::parse("https://user:pw@hc.example:8443/ping/abc123def456/start?rid=1&x=y")
            .expect("url");
        assert_eq!(
            redact_url(&url),
            "https://hc.example:8443/ping/<redacted>/start"
        );
        let kuma = Url::parse("http://k/api/push/TOKEN99?status=up&msg=secret").expect("url");
        assert_eq!(redact_url(&kuma), "http://k/api/push/<redacted>");
        let exit = Url::parse("http://h/ping/tok3n-long/42").expect("url");
        assert_eq!(redact_url(&exit), "http://h/ping/<redacted>/42");
    }

    #[test]
    fn scrub_removes_echoed_tokens() {
        let url = Url::parse("http://h/ping/s3cr3t-token").expect("url");
        assert_eq!(
            scrub("no check for /ping/s3cr3t-token here", &url),
            "no check for /ping/<redacted> here"
        );
    }

    #[test]
    fn join_and_query_keep_what_was_there() {
        let url = Url::parse("http://h/ping/tok/?create=1").expect("url");
        let joined = join(&url, &["start"]);
        assert_eq!(joined.as_str(), "http://h/ping/tok/start?create=1");
        let q = with_query(&joined, &[("rid", "r1".into()), ("create", "0".into())]);
        assert_eq!(q.as_str(), "http://h/ping/tok/start?rid=r1&create=0");
        let plain = with_query(&Url::parse("http://h/p").expect("url"), &[]);
        assert_eq!(plain.as_str(), "http://h/p");
    }

    #[test]
    fn bad_urls_name_the_field() {
        for bad in ["", "ftp://h/x", "not a url", "mailto:x@y"] {
            let e = parse_url("url", bad).expect_err(bad).to_string();
            assert!(e.starts_with("url: "), "{bad}: {e}");
        }
    }
}
