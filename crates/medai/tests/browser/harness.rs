//! The pieces the browser flows stand on: the real `medai serve` process, chromedriver, one
//! headless Chromium per person, bounded waits, screenshots and TOTP codes. Every process is
//! owned by a guard that kills it when dropped, so a failing assertion leaves nothing running.

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any single wait lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (with its whole process group when it leads one) when dropped.
pub struct Guard {
    name: &'static str,
    child: Child,
    group: bool,
    log: Option<PathBuf>,
}

impl Guard {
    fn new(name: &'static str, child: Child, group: bool, log: Option<PathBuf>) -> Self {
        Self {
            name,
            child,
            group,
            log,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.group {
            // chromedriver leads its own process group; the browsers it started are in it too.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Some(log) = &self.log {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(40);
                eprintln!("--- last lines of the {} log ---", self.name);
                for l in &lines[from..] {
                    eprintln!("{}", l.chars().take(400).collect::<String>());
                }
            }
        }
    }
}

/// A running `medai serve` on the embedded defaults (SQLite and in-process sessions in a
/// fresh data directory) with a test configuration.
pub struct Medai {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The first-run setup link printed on standard output.
    pub setup_url: String,
    config: PathBuf,
    log: PathBuf,
    _proc: Guard,
    _tmp: tempfile::TempDir,
}

impl Medai {
    /// Writes the configuration (with `extra` TOML appended), starts the server and waits until
    /// it is ready.
    pub async fn start(llm_endpoint: &str, extra: &str) -> Medai {
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let data = tmp.path().join("data");
        let config = tmp.path().join("medai.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n\
                 metrics_listen = \"127.0.0.1:0\"\n\
                 data_dir = {data:?}\n\
                 log_format = \"json\"\n\
                 {extra}\n\
                 [llm]\n\
                 default_model = \"browser-model\"\n\
                 [[llm.models]]\n\
                 id = \"browser-model\"\n\
                 provider = \"openai\"\n\
                 endpoint = \"{llm_endpoint}\"\n\
                 model = \"{model}\"\n\
                 context_window = 8192\n\
                 retry = {{ max_retries = 0 }}\n",
                model = crate::upstream::UPSTREAM_MODEL,
            ),
        )
        .unwrap();
        let log = tmp.path().join("medai.log");
        let mut child = medai_command(&config)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let proc = Guard::new("medai", child, false, Some(log.clone()));
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let setup_url = tokio::task::spawn_blocking(move || loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("medai serve printed no setup link");
            if line.contains("/setup?token=") {
                return line.trim().to_owned();
            }
        })
        .await
        .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        assert!(setup_url.starts_with(&base), "{setup_url}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "medai never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Medai {
            base,
            setup_url,
            config,
            log,
            _proc: proc,
            _tmp: tmp,
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's access log lines (JSON) so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "request")
            .collect()
    }

    /// Runs an operator command against the same data directory, as an operator would while the
    /// server runs; fails the test when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let o: Output = medai_command(&self.config).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "medai {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

fn medai_command(config: &Path) -> Command {
    // `MEDAI_TEST_BINARY` runs the flows against another build (a release binary, say).
    let bin = std::env::var_os("MEDAI_TEST_BINARY")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_medai")), PathBuf::from);
    let mut c = Command::new(bin);
    c.arg("--config").arg(config);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MEDAI_") {
            c.env_remove(k);
        }
    }
    c.env("MEDAI_LOG", "info");
    c
}

/// A running chromedriver, from which each person gets their own browser.
pub struct Driver {
    url: String,
    shots: PathBuf,
    _proc: Guard,
    _tmp: tempfile::TempDir,
}

impl Driver {
    /// Starts `chromedriver` (the path from `MEDAI_TEST_CHROMEDRIVER`) on a free port.
    pub async fn start(path: &std::ffi::OsStr) -> Driver {
        use std::os::unix::process::CommandExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = tmp.path().join("chromedriver.log");
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path:?}: {e}"));
        let proc = Guard::new("chromedriver", child, true, Some(log));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if v["value"]["ready"] == true {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A relative directory is taken from the workspace root (cargo runs tests from the
        // package's directory), so `MEDAI_SCREENSHOT_DIR=docs/screenshots` means the repo's.
        let shots = match std::env::var_os("MEDAI_SCREENSHOT_DIR") {
            Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
            Some(d) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(d),
            None => tmp.path().join("screenshots"),
        };
        std::fs::create_dir_all(&shots).unwrap();
        Driver {
            url,
            shots,
            _proc: proc,
            _tmp: tmp,
        }
    }

    /// Where the screenshots go.
    pub fn screenshot_dir(&self) -> &Path {
        &self.shots
    }

    /// A fresh headless Chromium (its own profile, so its own cookies) at 1280x900.
    pub async fn browser(&self, who: &'static str) -> Browser {
        self.browser_with(who, true).await
    }

    /// [`Driver::browser`], with the pages' JavaScript turned off when `javascript` is false
    /// (WebDriver's own scripts still run).
    pub async fn browser_with(&self, who: &'static str, javascript: bool) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        let mut opts = serde_json::json!({
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-breakpad",
                "--disable-crash-reporter",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        });
        if !javascript {
            opts["prefs"] =
                serde_json::json!({"profile.managed_default_content_settings.javascript": 2});
        }
        if let Some(bin) = std::env::var_os("MEDAI_TEST_CHROMIUM") {
            opts["binary"] = bin.to_string_lossy().into_owned().into();
        }
        caps.insert("goog:chromeOptions".into(), opts);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no browser session for {who}: {e}"));
        Browser {
            c: client,
            who,
            shots: self.shots.clone(),
            _profile: profile,
        }
    }
}

/// One person's browser.
pub struct Browser {
    /// The WebDriver session.
    pub c: Client,
    who: &'static str,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Opens `url` and waits for the document to load.
    pub async fn goto(&self, url: &str) {
        self.c.goto(url).await.unwrap();
    }

    /// The path of the current page.
    pub async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_owned()
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        match self.c.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Polls `check` (every 50 ms, at most [`WAIT`]) until it gives a value; on time-out saves
    /// a screenshot and fails with `what`, the URL and the page text.
    pub async fn wait_some<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// [`Browser::wait_some`] for a condition.
    pub async fn wait_for<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self.wait_some(what, || {
            let f = check();
            async move { f.await.then_some(()) }
        })
        .await;
    }

    /// Fails the test with the page's state and a screenshot.
    pub async fn fail(&self, why: &str) -> ! {
        let url = self
            .c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text = self.text().await;
        let shot = self.shots.join(format!("FAILED-{}.png", self.who));
        if let Ok(png) = self.c.screenshot().await {
            let _ = std::fs::write(&shot, png);
        }
        panic!(
            "[{}] {why}\nurl: {url}\nscreenshot: {}\npage text:\n{}",
            self.who,
            shot.display(),
            text.chars().take(3000).collect::<String>()
        );
    }

    /// Waits until the page text contains `needle`.
    pub async fn wait_text(&self, needle: &str) {
        self.wait_for(&format!("text {needle:?}"), || async {
            self.text().await.contains(needle)
        })
        .await;
    }

    /// Waits until the current path is `path` (query ignored).
    pub async fn wait_path(&self, path: &str) {
        self.wait_for(&format!("path {path}"), || async {
            self.path().await == path
        })
        .await;
    }

    /// Waits for an element matching the CSS selector.
    pub async fn el(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_some(&format!("element {css}"), || async {
            self.c.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// Waits for an element matching the XPath.
    pub async fn xpath(&self, what: &str, xpath: &str) -> fantoccini::elements::Element {
        self.wait_some(what, || async {
            self.c.find(Locator::XPath(xpath)).await.ok()
        })
        .await
    }

    /// The form control whose `<label>` text contains `label` (through `for`, or wrapped).
    pub async fn field(&self, label: &str) -> fantoccini::elements::Element {
        let xpath = format!(
            "//label[contains(normalize-space(.), {})]",
            xpath_literal(label)
        );
        self.wait_some(&format!("a field labelled {label:?}"), || async {
            let l = self.c.find(Locator::XPath(&xpath)).await.ok()?;
            match l.attr("for").await.ok().flatten() {
                Some(id) => self.c.find(Locator::Id(&id)).await.ok(),
                None => l.find(Locator::Css("input, select, textarea")).await.ok(),
            }
        })
        .await
    }

    /// Types `value` into the field labelled `label` (after clearing it).
    pub async fn fill(&self, label: &str, value: &str) {
        let f = self.field(label).await;
        f.clear().await.unwrap();
        f.send_keys(value).await.unwrap();
    }

    /// Clicks the button (or submit input) whose text is `text`.
    pub async fn click_button(&self, text: &str) {
        let lit = xpath_literal(text);
        let xpath = format!(
            "//button[normalize-space(.)={lit}] | //input[(@type='submit' or @type='button') and @value={lit}]"
        );
        let b = self.xpath(&format!("button {text:?}"), &xpath).await;
        b.click().await.unwrap();
    }

    /// Clicks the link whose text contains `text`.
    pub async fn click_link(&self, text: &str) {
        let xpath = format!("//a[contains(normalize-space(.), {})]", xpath_literal(text));
        let a = self.xpath(&format!("link {text:?}"), &xpath).await;
        a.click().await.unwrap();
    }

    /// Saves a PNG of the viewport as `<dir>/<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the WebDriver session (closing the browser).
    pub async fn close(self) {
        let _ = self.c.close().await;
    }
}

/// An XPath string literal for `s` (XPath 1.0 has no escapes; use concat() for both quotes).
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// A person's authenticator: computes RFC 6238 codes from the secret the enrolment page shows,
/// never reusing a 30-second step (the server refuses a step already used).
pub struct Authenticator {
    totp: totp_rs::TOTP,
    last_step: Option<u64>,
}

impl Authenticator {
    /// From the base32 key shown on the enrolment page.
    pub fn from_base32(secret: &str) -> Self {
        let bytes = totp_rs::Secret::Encoded(secret.trim().to_owned())
            .to_bytes()
            .unwrap_or_else(|e| panic!("the page's key {secret:?} is not base32: {e:?}"));
        let totp = totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            6,
            1,
            30,
            bytes,
            None,
            String::new(),
        );
        Self {
            totp,
            last_step: None,
        }
    }

    /// The current 30-second step, from the same wall clock the server reads.
    fn now_step() -> u64 {
        use medai_core::Clock as _;
        u64::try_from(medai_core::SystemClock.now()).unwrap() / 30
    }

    /// The next code to type: for the current step, or the next one (within the server's one
    /// step of skew) when the current one was used; waits for the clock otherwise.
    pub async fn code(&mut self) -> String {
        loop {
            let now = Self::now_step();
            let step = match self.last_step {
                Some(last) if last >= now => last + 1,
                _ => now,
            };
            if step <= now + 1 {
                self.last_step = Some(step);
                return self.totp.generate(step * 30);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
