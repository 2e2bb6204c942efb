//! Headless Chromium through chromedriver (WebDriver, via `fantoccini`).
//!
//! Without `chromedriver`/`chromium` [`Browser::start`] prints `skipping: <reason>` and
//! returns `None`, unless `HEARTBEAT_REQUIRE_BROWSER=1` (CI), where their absence fails
//! the test. `CHROMEDRIVER` and `CHROME` override the executables' paths.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value as Json, json};

use crate::{Proc, free_port, skip, wait_port, which};

/// Makes a missing browser a failure instead of a skip.
pub const REQUIRE_VAR: &str = "HEARTBEAT_REQUIRE_BROWSER";
/// How long [`wait_js`] waits for a condition.
pub const WAIT: Duration = Duration::from_secs(20);

/// A WebDriver session in headless Chromium, with its chromedriver.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver and a 1280×800 headless Chromium session in US English,
    /// or returns `None` (after printing why) when they are not installed.
    pub async fn start() -> Option<Browser> {
        const HINT: &str = "(apt-get install chromium chromium-driver)";
        let Some(driver) = which("CHROMEDRIVER", &["chromedriver"]) else {
            skip(REQUIRE_VAR, &format!("chromedriver not found {HINT}"));
            return None;
        };
        let Some(chrome) = which("CHROME", &["chromium", "chromium-browser", "google-chrome"])
        else {
            skip(REQUIRE_VAR, &format!("chromium not found {HINT}"));
            return None;
        };
        Some(Browser::launch(driver, chrome).await)
    }

    async fn launch(driver: PathBuf, chrome: PathBuf) -> Browser {
        let port = free_port();
        let mut child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_port(port, "chromedriver", &mut child);
        let driver = Proc(child);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,800", "--lang=en-US", "--hide-scrollbars"],
                "prefs": {"intl.accept_languages": "en-US,en"},
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Runs `checks` in a task and closes the session afterwards, also when a check
    /// panics (the panic is then resumed), so no Chromium is left behind.
    pub async fn run<F, Fut>(self, checks: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task = tokio::spawn(checks(self.client.clone()));
        let outcome = task.await;
        let _ = self.client.close().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Whether a script's value counts as "yes": not null, false, "" or 0.
pub fn truthy(v: &Json) -> bool {
    !matches!(v, Json::Null | Json::Bool(false))
        && v.as_str() != Some("")
        && v.as_f64() != Some(0.0)
}

/// Polls `script` (a function body that `return`s) until its value is truthy; panics
/// with the last value after [`WAIT`].
pub async fn wait_js(c: &Client, what: &str, script: &str) -> Json {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match c.execute(script, vec![]).await {
            Ok(v) if truthy(&v) => return v,
            Ok(v) => v,
            Err(e) => json!(format!("error: {e}")),
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last value: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling interval
    }
}

/// Runs `script` once and returns its value.
pub async fn js(c: &Client, script: &str) -> Json {
    c.execute(script, vec![]).await.expect("script")
}
