//! The outbound dead-man heartbeat: `POST HEARTBEAT_URL` each cycle with
//! `Authorization: Bearer <SECRET_KEY>` and `{"services": {"<name>": {"status": ...}}}`,
//! the replaced system's contract.

use std::collections::BTreeMap;
use std::time::Duration;

use heartbeat_core::Secret;
use reqwest::header::AUTHORIZATION;
use serde::Serialize;
use url::Url;

use crate::error::{DeliveryError, DeliveryErrorKind, Redactor};
use crate::{Notifier, http};

#[derive(Serialize)]
struct ServiceStatus<'a> {
    status: &'a str,
}

#[derive(Serialize)]
struct Payload<'a> {
    services: BTreeMap<&'a str, ServiceStatus<'a>>,
}

impl Notifier {
    /// Sends one heartbeat. Returns the HTTP status of *any* answer (the worker
    /// signals its own state with 200/220/221/500), or an error when none came.
    pub async fn post_heartbeat(
        &self,
        url: &Url,
        secret: &Secret,
        services: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u16, DeliveryError> {
        let mut redactor = Redactor::default();
        redactor.add(secret.expose());
        redactor.add_url(url);
        let payload = Payload {
            services: services
                .iter()
                .map(|(name, status)| (*name, ServiceStatus { status }))
                .collect(),
        };
        let body = serde_json::to_vec(&payload).map_err(|e| {
            DeliveryError::new("heartbeat", DeliveryErrorKind::Request(e.to_string()))
        })?;
        let request = self
            .http
            .post(url.clone())
            .header(AUTHORIZATION, format!("Bearer {}", secret.expose()))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send();
        let result = match tokio::time::timeout(timeout, request).await {
            Err(_) => Err(DeliveryErrorKind::Timeout(timeout)),
            Ok(Err(e)) => Err(http::classify(&e, timeout, &redactor)),
            Ok(Ok(resp)) => Ok(resp.status().as_u16()),
        };
        result.map_err(|kind| DeliveryError::new("heartbeat", kind))
    }
}
