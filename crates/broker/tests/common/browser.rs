//! A real browser for the web tests: Debian's headless `chromium`, driven
//! through `chromedriver` (WebDriver). Every page a test visits can be saved
//! as a screenshot under `target/screenshots/<test>/`, as a test artifact.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::{DEADLINE, ports, wait_for};

/// A chromedriver process and a browser session on it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _port: ports::Ports,
    shots: PathBuf,
    count: u32,
}

fn find(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("none of {candidates:?} exists: install Debian's chromium and chromium-driver (scripts/test does)")
        })
        .to_string()
}

impl Browser {
    /// Starts chromedriver and a headless chromium; screenshots go to
    /// `target/screenshots/<test>/`.
    pub async fn start(test: &str) -> Self {
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
        let port = ports::reserve(1);
        // Its own process group, so that the browsers it starts go with it.
        let driver = Command::new(driver_bin)
            .process_group(0)
            .arg(format!("--port={}", port.base))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{}", port.base);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"],
            }),
        );
        let client = wait_for("chromedriver to accept a session", DEADLINE, || {
            let (url, caps) = (url.clone(), caps.clone());
            async move {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        let shots = PathBuf::from(env!("CARGO_BIN_EXE_rpibroker"))
            .parent()
            .and_then(|p| p.parent())
            .expect("target directory")
            .join("screenshots")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            client,
            driver,
            _port: port,
            shots,
            count: 0,
        }
    }

    /// Saves a screenshot of the current page as `NN-name.png`.
    pub async fn shot(&mut self, name: &str) {
        self.count += 1;
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(
            self.shots.join(format!("{:02}-{name}.png", self.count)),
            png,
        )
        .unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Types `text` into the field labelled by its `name`.
    pub async fn fill(&self, name: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("[name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no field {name}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks the button whose text is `text`, or else the link.
    pub async fn click(&self, text: &str) {
        let button = format!("//button[normalize-space()='{text}']");
        let link = format!("//a[normalize-space()='{text}']");
        let element = match self.client.find(Locator::XPath(&button)).await {
            Ok(e) => e,
            Err(_) => self
                .client
                .find(Locator::XPath(&link))
                .await
                .unwrap_or_else(|e| panic!("nothing to click named {text:?}: {e}")),
        };
        element.click().await.unwrap();
    }

    /// The visible text of the page, if it is loaded (`None` while a
    /// navigation replaces it).
    async fn text_now(&self) -> Option<String> {
        let body = self.client.find(Locator::Css("body")).await.ok()?;
        body.text().await.ok()
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        wait_for("a page to read", DEADLINE, || self.text_now()).await
    }

    /// Waits until the page's text contains `needle`; returns the text.
    pub async fn wait_text(&self, needle: &str) -> String {
        let what = format!("the page to say {needle:?}");
        wait_for(&what, DEADLINE, || async move {
            let text = self.text_now().await?;
            text.contains(needle).then_some(text)
        })
        .await
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Whether the page is wider than the window (it would scroll sideways).
    pub async fn overflows_horizontally(&self) -> bool {
        self.client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth;",
                vec![],
            )
            .await
            .unwrap()
            .as_bool()
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: signals the process group this harness created.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
