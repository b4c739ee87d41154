//! A headless Chromium driven over WebDriver (Debian's chromium + chromium-driver): the
//! W3C WebDriver JSON protocol spoken with reqwest, so the tests need no browser crate.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::wait::{ChildGuard, eventually, free_port};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser tests can run here. A machine without Chromium skips them, unless the
/// run is CI or `scripts/test` (which install it): there a missing browser is a failure.
pub fn available() -> bool {
    let present = Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists();
    if !present {
        let required = std::env::var_os("CI").is_some()
            || std::env::var_os("USPWATCH_REQUIRE_BROWSER").is_some();
        assert!(
            !required,
            "{CHROMIUM} or {CHROMEDRIVER} missing: install Debian's chromium and chromium-driver (scripts/test does)"
        );
        eprintln!(
            "skipped: {CHROMIUM} / {CHROMEDRIVER} not installed (scripts/test installs them)"
        );
    }
    present
}

/// One browser session; chromedriver (and with it Chromium) ends when this is dropped.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    port: u16,
    _profile: tempfile::TempDir,
    _driver: ChildGuard,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = ChildGuard(driver);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        eventually("chromedriver ready", Duration::from_secs(30), || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let v: Value = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                if v["value"]["ready"] == json!(true) {
                    Ok(())
                } else {
                    Err(v.to_string())
                }
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            http,
            base,
            session,
            port,
            _profile: profile,
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element matching `css` now, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()?
            .first()
            .and_then(|e| e[ELEMENT].as_str())
            .map(str::to_string)
    }

    /// Waits for an element matching `css` to exist.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let me = self;
        eventually(&format!("element {css}"), timeout, move || async move {
            me.find(css).await.ok_or("absent")
        })
        .await
    }

    pub async fn text(&self, element: &str) -> String {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the text of the element matching `css` satisfies `ok`; returns it.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let (me, ok) = (self, &ok);
        eventually(&format!("text of {css}"), timeout, move || async move {
            let Some(e) = me.find(css).await else {
                return Err("absent".to_string());
            };
            let t = me.text(&e).await;
            if ok(&t) { Ok(t) } else { Err(t) }
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        let e = self.wait_for(css, Duration::from_secs(20)).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Replaces the value of an input.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css, Duration::from_secs(20)).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Saves a PNG of the window under the test artifacts directory; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot base64"))
            .expect("screenshot PNG");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

/// Where screenshots go: beside the build's other test output.
pub fn artifacts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-console")
}

impl Drop for Browser {
    /// Ends the session so chromedriver closes Chromium before it is killed itself (a killed
    /// chromedriver would leave the browser behind). Plain blocking HTTP: no runtime here.
    fn drop(&mut self) {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let req = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session, self.port
        );
        if s.write_all(req.as_bytes()).is_ok() {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
}
