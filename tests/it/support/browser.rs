//! A real browser for the console: `chromedriver` started by the test on a free port, driving
//! headless Chromium over WebDriver with `fantoccini`.
//!
//! Both come from Debian's `chromium` and `chromium-driver` packages, which `.ci/run`
//! installs. Without them the browser test says so and passes, except under CI (`CI` set),
//! where it fails.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;

use super::process::Proc;
use super::redis_server::free_port;

/// How long chromedriver may take to say it listens: a safety net.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a click may take to bring the next page: a safety net.
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The first of `names` found on `PATH` (or the path in environment variable `env`).
fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver and Chromium, or `None` (with a note) when either is missing outside CI.
pub fn chromium_or_skip() -> Option<(PathBuf, PathBuf)> {
    let driver = find("HERALD_CHROMEDRIVER", &["chromedriver"]);
    let browser = find("HERALD_CHROMIUM", &["chromium", "chromium-browser"]);
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        (driver, browser) => {
            let missing = match (driver, browser) {
                (None, None) => "chromedriver and chromium",
                (None, _) => "chromedriver",
                _ => "chromium",
            };
            if std::env::var_os("CI").is_some() {
                panic!("{missing} not found under CI: .ci/run installs Debian's chromium and chromium-driver");
            }
            eprintln!(
                "SKIPPED: {missing} not found (PATH, HERALD_CHROMEDRIVER, HERALD_CHROMIUM); \
                 install Debian's chromium and chromium-driver to run the browser test"
            );
            None
        }
    }
}

/// A chromedriver process and one browser session on it.
#[derive(Debug)]
pub struct Browser {
    driver: Proc,
    pub client: Client,
}

impl Browser {
    /// Starts chromedriver on a free port (in a process group of its own, so that Chromium
    /// goes with it) and opens a headless Chromium session at 1280×900.
    pub async fn start(driver: &Path, chromium: &Path) -> Browser {
        let port = free_port();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}")).process_group(0);
        let proc = Proc::spawn("chromedriver", cmd, None);
        proc.wait_for_line(READY_TIMEOUT, |l| l.contains("started successfully"))
            .unwrap_or_else(|| panic!("chromedriver did not start:\n{}", proc.output()));
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                ],
            },
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.as_object().expect("an object").clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", proc.output()));
        Browser {
            driver: proc,
            client,
        }
    }

    /// Goes to `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// Types `text` into the field matching `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Clicks the first element matching `css`, and waits for the page it leads to.
    pub async fn click(&self, css: &str) {
        let page = self.page().await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
        self.wait_past(page, css).await;
    }

    /// Clicks the link whose text is `text`, and waits for the page it leads to.
    pub async fn click_link(&self, text: &str) {
        let page = self.page().await;
        self.client
            .find(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("no link {text:?}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click link {text:?}: {e}"));
        self.wait_past(page, text).await;
    }

    /// The document element of the page shown now.
    async fn page(&self) -> Element {
        self.client
            .find(Locator::Css("html"))
            .await
            .unwrap_or_else(|e| panic!("no page: {e}"))
    }

    /// Waits until `page` has been replaced by the next one: its element goes stale when the
    /// browser unloads it. Without this a lookup right after a click can find the old page's
    /// element, which goes stale under it.
    async fn wait_past(&self, page: Element, what: &str) {
        let deadline = Instant::now() + NAVIGATION_TIMEOUT;
        while page.tag_name().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "clicking {what} led to no new page"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The page's address now.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .to_string()
    }

    /// Saves a screenshot of the page as `name`.png in the directory named by the environment
    /// variable `HERALD_SCREENSHOTS`, if it is set (this is how the README's picture is made).
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("HERALD_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Ends the browser session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started share its process group.
        let _ = killpg(Pid::from_raw(self.driver.pid()), Signal::SIGKILL);
    }
}
