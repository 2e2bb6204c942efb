//! The LaneSwap-style JSON API: register services, send heartbeats with a status,
//! report progress of long tasks (docs/push-api.md §4 of the push listener).

use heartbeat_core::Secret;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::http::Request;
use crate::url::{join, redact_url};
use crate::{Client, ClientError};

/// A heartbeat's status, as LaneSwap clients send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatStatus {
    Healthy,
    /// Degraded but alive: recorded, no alert.
    Warning,
    Error,
    Critical,
    Unknown,
}

impl HeartbeatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatStatus::Healthy => "healthy",
            HeartbeatStatus::Warning => "warning",
            HeartbeatStatus::Error => "error",
            HeartbeatStatus::Critical => "critical",
            HeartbeatStatus::Unknown => "unknown",
        }
    }
}

/// A progress task's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl TaskStatus {
    fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }
}

/// What `POST /api/services` registers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registration {
    pub name: String,
    /// Seconds between expected heartbeats (server default 60).
    pub period_s: Option<f64>,
    /// Seconds of lateness tolerated after the period (server default 60).
    pub grace_s: Option<f64>,
    /// A cron expression instead of a period.
    pub schedule: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

/// A service as the API shows it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServiceInfo {
    pub service_id: String,
    pub name: String,
    #[serde(default)]
    pub source: Option<String>,
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub last_heartbeat: Option<String>,
    #[serde(default)]
    pub period: Option<f64>,
    #[serde(default)]
    pub grace: Option<f64>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub metadata: Value,
}

/// A progress task as the API shows it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskInfo {
    pub task_id: String,
    pub task_name: String,
    pub total_steps: u64,
    pub current_step: u64,
    pub percentage: f64,
    pub status: TaskStatus,
    #[serde(default)]
    pub message: Option<String>,
}

/// The JSON API of one agent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    client: Client,
    base: Url,
}

/// One service, with the token that authorises its requests.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    api: Services,
    id: String,
    token: Secret,
}

/// One progress task of a service.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    service: ServiceHandle,
    pub info: TaskInfo,
}

fn parse<T: serde::de::DeserializeOwned>(url: &Url, body: &str) -> Result<T, ClientError> {
    serde_json::from_str(body).map_err(|e| ClientError::InvalidResponse {
        url: redact_url(url),
        reason: e.to_string(),
    })
}

impl Services {
    /// `base` is the agent's listener, e.g. `http://127.0.0.1:8101/`.
    pub fn new(client: Client, base: &Url) -> Services {
        Services {
            client,
            base: base.clone(),
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut base = self.base.clone();
        base.set_query(None);
        join(&base, segments)
    }

    async fn call(
        &self,
        method: Method,
        url: &Url,
        bearer: &Secret,
        body: Option<Value>,
    ) -> Result<String, ClientError> {
        self.call_with(method, url, bearer, body, true).await
    }

    /// `idempotent: false` for requests that create something (see `Request::idempotent`).
    async fn call_with(
        &self,
        method: Method,
        url: &Url,
        bearer: &Secret,
        body: Option<Value>,
        idempotent: bool,
    ) -> Result<String, ClientError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let ack = self
            .client
            .send(&Request {
                method,
                url,
                body: bytes.as_deref(),
                json: true,
                bearer: Some(bearer.expose()),
                idempotent,
            })
            .await?;
        Ok(ack.body)
    }

    /// Registers a service (admin token). Returns it and its token, which the server shows only once.
    pub async fn register(
        &self,
        admin_token: &Secret,
        reg: &Registration,
    ) -> Result<(ServiceInfo, ServiceHandle), ClientError> {
        let mut body = json!({ "name": reg.name });
        if let Some(p) = reg.period_s {
            body["period"] = json!(p);
        }
        if let Some(g) = reg.grace_s {
            body["grace"] = json!(g);
        }
        if let Some(s) = &reg.schedule {
            body["schedule"] = json!(s);
        }
        if let Some(m) = &reg.metadata {
            body["metadata"] = Value::Object(m.clone());
        }
        let url = self.url(&["api", "services"]);
        let text = self
            .call_with(Method::POST, &url, admin_token, Some(body), false)
            .await?;
        let value: Value = parse(&url, &text)?;
        let token = value.get("token").and_then(Value::as_str).ok_or_else(|| {
            ClientError::InvalidResponse {
                url: redact_url(&url),
                reason: "no token in the registration answer".into(),
            }
        })?;
        let info: ServiceInfo =
            serde_json::from_value(value.clone()).map_err(|e| ClientError::InvalidResponse {
                url: redact_url(&url),
                reason: e.to_string(),
            })?;
        let handle = self.service(&info.service_id, Secret::new(token));
        Ok((info, handle))
    }

    /// Every service (admin token).
    pub async fn list(&self, admin_token: &Secret) -> Result<Vec<ServiceInfo>, ClientError> {
        #[derive(Deserialize)]
        struct List {
            services: Vec<ServiceInfo>,
        }
        let url = self.url(&["api", "services"]);
        let text = self.call(Method::GET, &url, admin_token, None).await?;
        Ok(parse::<List>(&url, &text)?.services)
    }

    /// Deletes a registered service (admin token).
    pub async fn delete(&self, admin_token: &Secret, id: &str) -> Result<(), ClientError> {
        let url = self.url(&["api", "services", id]);
        self.call(Method::DELETE, &url, admin_token, None).await?;
        Ok(())
    }

    /// A handle on an existing service: `id` is its `service_id` (the target name for
    /// environment targets), `token` its push token.
    pub fn service(&self, id: &str, token: Secret) -> ServiceHandle {
        ServiceHandle {
            api: self.clone(),
            id: id.to_owned(),
            token,
        }
    }
}

impl ServiceHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token, for building ping URLs (`/ping/<token>`); keep it out of logs.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    pub async fn info(&self) -> Result<ServiceInfo, ClientError> {
        let url = self.api.url(&["api", "services", &self.id]);
        let text = self.api.call(Method::GET, &url, &self.token, None).await?;
        parse(&url, &text)
    }

    /// Sends a heartbeat with a status, an optional message and metadata.
    pub async fn heartbeat(
        &self,
        status: HeartbeatStatus,
        message: Option<&str>,
        metadata: Option<Value>,
    ) -> Result<(), ClientError> {
        let mut body = json!({ "status": status.as_str() });
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        if let Some(m) = metadata {
            body["metadata"] = m;
        }
        let url = self.api.url(&["api", "services", &self.id, "heartbeat"]);
        self.api
            .call(Method::POST, &url, &self.token, Some(body))
            .await?;
        Ok(())
    }

    /// The newest events (at most `limit`), as JSON objects.
    pub async fn pings(&self, limit: u32) -> Result<Vec<Value>, ClientError> {
        #[derive(Deserialize)]
        struct Pings {
            pings: Vec<Value>,
        }
        let mut url = self.api.url(&["api", "services", &self.id, "pings"]);
        url.set_query(Some(&format!("limit={limit}")));
        let text = self.api.call(Method::GET, &url, &self.token, None).await?;
        Ok(parse::<Pings>(&url, &text)?.pings)
    }

    /// Starts a progress task of `total_steps` steps (at least 1).
    pub async fn start_task(
        &self,
        task_name: &str,
        total_steps: u64,
        description: Option<&str>,
    ) -> Result<TaskHandle, ClientError> {
        if total_steps == 0 {
            return Err(ClientError::InvalidInput {
                field: "total_steps",
                reason: "must be at least 1".into(),
            });
        }
        let mut body = json!({ "task_name": task_name, "total_steps": total_steps });
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        let url = self.api.url(&["api", "services", &self.id, "progress"]);
        let text = self
            .api
            .call_with(Method::POST, &url, &self.token, Some(body), false)
            .await?;
        Ok(TaskHandle {
            service: self.clone(),
            info: parse(&url, &text)?,
        })
    }
}

impl TaskHandle {
    async fn post(&mut self, tail: &[&str], body: Value) -> Result<&TaskInfo, ClientError> {
        let s = &self.service;
        let mut segments = vec!["api", "services", &s.id, "progress", &self.info.task_id];
        segments.extend_from_slice(tail);
        let url = s.api.url(&segments);
        let text = s.api.call(Method::POST, &url, &s.token, Some(body)).await?;
        self.info = parse(&url, &text)?;
        Ok(&self.info)
    }

    /// Reports the current step (0…total), optionally a status (`pending`/`running`) and a message.
    pub async fn update(
        &mut self,
        current_step: u64,
        status: Option<TaskStatus>,
        message: Option<&str>,
    ) -> Result<&TaskInfo, ClientError> {
        let mut body = json!({ "current_step": current_step });
        if let Some(st) = status {
            body["status"] = json!(st.as_str());
        }
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        self.post(&[], body).await
    }

    /// Marks the task completed (current step = total).
    pub async fn complete(&mut self, message: Option<&str>) -> Result<&TaskInfo, ClientError> {
        let body = message.map_or_else(|| json!({}), |m| json!({ "message": m }));
        self.post(&["complete"], body).await
    }

    /// Marks the task failed; the service records a failure.
    pub async fn fail(&mut self, message: Option<&str>) -> Result<&TaskInfo, ClientError> {
        let body = message.map_or_else(|| json!({}), |m| json!({ "message": m }));
        self.post(&["fail"], body).await
    }
}
