//! The crm_comments page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), against the example binary started as a user starts it; and a page that
//! opens more streams than HTTP/1.1 allows, over `livepush::serve::serve_tls` and h2.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`scripts/test.sh` installs them).
//! Without them this test fails and says so: it never skips.
//!
//! A test binary of its own, not a module of `tests/it`, so that a machine without Chromium
//! still runs every other integration test.

// The shared helpers of `tests/it`; this binary uses a part of them, the rest is not dead code
// there (hence the allow, on this binary's copy only).
#[path = "it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::{free_port, Example};

/// How long the page may take to show what it should.
const PAGE_WAIT: Duration = Duration::from_secs(10);

/// `name` on `PATH`, or the first of `fallbacks` that exists.
fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

fn required(name: &str, fallbacks: &[&str]) -> PathBuf {
    find_program(name, fallbacks).unwrap_or_else(|| {
        panic!(
            "`{name}` not found: the browser test needs Chromium and ChromeDriver. Install them with \
             `apt-get install chromium chromium-driver`, or run `scripts/test.sh`, which does."
        )
    })
}

/// A chromedriver on a free loopback port, killed when dropped.
struct ChromeDriver {
    port: u16,
    child: Child,
}

impl ChromeDriver {
    async fn start(program: &Path) -> ChromeDriver {
        // A port found free may be taken before chromedriver binds it: chromedriver then exits,
        // and it is started again on another port (a few times at most).
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut driver = ChromeDriver { port, child };
            if driver.answers().await {
                return driver;
            }
        }
        panic!("chromedriver did not start on any of 5 free ports");
    }

    /// Whether this chromedriver answers its status page; false when it exited first (its port
    /// was taken). Panics if it neither answers nor exits within 20 s.
    async fn answers(&mut self) -> bool {
        let status = format!("http://127.0.0.1:{}/status", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(response) = reqwest::get(&status).await {
                if response.status().is_success() {
                    return true;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open_browser(
    driver: &ChromeDriver,
    chromium: &Path,
    profile: &Path,
    extra_args: &[&str],
) -> Client {
    let mut args = vec![
        json!("--headless"),
        json!("--no-sandbox"),
        json!("--disable-gpu"),
        json!("--disable-dev-shm-usage"),
        json!("--disable-quic"),
        json!("--no-first-run"),
        json!("--disable-background-networking"),
        json!("--disable-component-update"),
        json!("--disable-sync"),
        json!("--window-size=1000,800"),
        json!(format!("--user-data-dir={}", profile.display())),
    ];
    args.extend(extra_args.iter().map(|a| json!(a)));
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    // what `console_errors` reads
    caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap_or_else(|e| panic!("cannot open a Chromium session through chromedriver: {e}"))
}

/// Waits until `check` answers true on the current window, or panics with `what`.
async fn wait_until<F, Fut>(browser: &Client, what: &str, mut check: F)
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PAGE_WAIT;
    while Instant::now() < deadline {
        if check(browser.clone()).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let html = browser.source().await.unwrap_or_default();
    panic!("timed out after {PAGE_WAIT:?} waiting for: {what}\npage:\n{html}");
}

async fn status_of(browser: Client) -> String {
    match browser.find(Locator::Css("#status")).await {
        Ok(el) => el
            .attr("data-state")
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The texts of the elements matching `css` on the current window.
async fn texts(browser: Client, css: &str) -> Vec<String> {
    let Ok(items) = browser.find_all(Locator::Css(css)).await else {
        return Vec::new();
    };
    let mut texts = Vec::new();
    for item in items {
        texts.push(item.text().await.unwrap_or_default());
    }
    texts
}

async fn comment_texts(browser: Client) -> Vec<String> {
    texts(browser, "#comments li .text").await
}

async fn wait_connected(browser: &Client, page: &str) {
    wait_until(
        browser,
        &format!("{page} shows `connected`"),
        |b| async move { status_of(b).await == "connected" },
    )
    .await;
}

async fn switch(browser: &Client, window: &WindowHandle) {
    browser
        .switch_to_window(window.clone())
        .await
        .expect("switch window");
}

/// Types `text` into the field `css` of the current window, as a person would.
async fn type_into(browser: &Client, css: &str, text: &str) -> Result<(), String> {
    field(browser, css)
        .await
        .send_keys(text)
        .await
        .map_err(|e| e.to_string())
}

/// Clicks the element `css` of the current window.
async fn click(browser: &Client, css: &str) -> Result<(), String> {
    field(browser, css)
        .await
        .click()
        .await
        .map_err(|e| e.to_string())
}

async fn field(browser: &Client, css: &str) -> Element {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} not on the page: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_posted_in_one_page_appears_live_in_the_other() {
    let example = Example::start("crm_comments", &[]);
    let session = BrowserSession::open("profile").await;
    let outcome = run_pages(&session.browser, &example).await;
    session.close(outcome, &example).await;
}

/// The scenario; errors carry what went wrong so the browser is closed before the test fails.
async fn run_pages(browser: &Client, example: &Example) -> Result<(), String> {
    let page_a = browser.window().await.map_err(|e| e.to_string())?;
    browser
        .goto(&example.url("/"))
        .await
        .map_err(|e| e.to_string())?;
    wait_connected(browser, "page A").await;

    let page_b = browser
        .new_window(false)
        .await
        .map_err(|e| e.to_string())?
        .handle;
    switch(browser, &page_b).await;
    browser
        .goto(&example.url("/"))
        .await
        .map_err(|e| e.to_string())?;
    wait_connected(browser, "page B").await;

    // Post through page B's form, as a person would.
    type_into(browser, "#author", "Dana").await?;
    type_into(browser, "#text", "Called the client, all good").await?;
    click(browser, "#send").await?;

    // Page A shows it, pushed over its event stream (it did nothing itself).
    switch(browser, &page_a).await;
    wait_until(
        browser,
        "page A shows the comment posted in page B",
        |b| async move {
            comment_texts(b)
                .await
                .iter()
                .any(|t| t == "Called the client, all good")
        },
    )
    .await;
    let author = field(browser, "#comments li .author")
        .await
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if author != "Dana" {
        return Err(format!("page A shows author {author:?}, expected \"Dana\""));
    }
    let state = status_of(browser.clone()).await;
    let label = field(browser, "#status")
        .await
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if state != "connected" || label != "connected" {
        return Err(format!(
            "page A status is {state:?} / {label:?}, expected connected"
        ));
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crm_comments_page.png");
    if let Ok(png) = browser.screenshot().await {
        let _ = std::fs::write(&shot, png);
    }

    // Delete it from page A: page B drops it.
    click(browser, "#comments li button.delete").await?;
    switch(browser, &page_b).await;
    wait_until(
        browser,
        "page B drops the comment deleted in page A",
        |b| async move { comment_texts(b).await.is_empty() },
    )
    .await;
    Ok(())
}

/// A Chromium session of its own (driver, profile), for one scenario.
struct BrowserSession {
    browser: Client,
    driver: ChromeDriver,
    profile: PathBuf,
}

impl BrowserSession {
    async fn open(name: &str) -> BrowserSession {
        let chromium = required(
            "chromium",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let chromedriver = required(
            "chromedriver",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let driver = ChromeDriver::start(&chromedriver).await;
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let browser = open_browser(&driver, &chromium, &profile, &[]).await;
        BrowserSession {
            browser,
            driver,
            profile,
        }
    }

    /// Closes the browser, then fails with the scenario's error and the example's output.
    async fn close(self, outcome: Result<(), String>, example: &Example) {
        let _ = self.browser.close().await;
        drop(self.driver);
        let _ = std::fs::remove_dir_all(&self.profile);
        if let Err(message) = outcome {
            panic!("{message}\n{}", example.output());
        }
    }
}

async fn post_json(url: String, body: serde_json::Value) -> Result<(), String> {
    let response = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("POST {url} answered {}", response.status()));
    }
    Ok(())
}

async fn log_events(browser: Client) -> Vec<String> {
    texts(browser, "#log li .event").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_page_resumes_after_the_id_it_stored() {
    let example = Example::start("domain_events", &[("LIVEPUSH_REPLAY", "100")]);
    let session = BrowserSession::open("reload").await;
    let outcome = reload_scenario(&session.browser, &example).await;
    session.close(outcome, &example).await;
}

/// The page shows one event, goes away, an event is pushed meanwhile, and the page is loaded
/// again in the same tab: it shows that event (replayed after the id in sessionStorage) and not
/// the first one again.
async fn reload_scenario(browser: &Client, example: &Example) -> Result<(), String> {
    let page = example.url("/?user=7");
    browser.goto(&page).await.map_err(|e| e.to_string())?;
    wait_connected(browser, "the notifications page").await;
    post_json(example.url("/users/7/sync"), json!({})).await?;
    wait_until(browser, "the page shows sync.completed", |b| async move {
        log_events(b).await == ["sync.completed"]
    })
    .await;
    browser
        .goto("about:blank")
        .await
        .map_err(|e| e.to_string())?;
    post_json(
        example.url("/users/7/invoices"),
        json!({ "amount_cents": 1200 }),
    )
    .await?;
    browser.goto(&page).await.map_err(|e| e.to_string())?;
    wait_until(
        browser,
        "the reloaded page shows the invoice pushed while it was away",
        |b| async move { log_events(b).await.iter().any(|e| e == "invoice.paid") },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = log_events(browser.clone()).await;
    if events != ["invoice.paid"] {
        return Err(format!(
            "the reloaded page shows {events:?}: expected only invoice.paid"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_posted_between_the_list_and_the_subscription_appears_once() {
    let example = Example::start("crm_comments", &[("LIVEPUSH_REPLAY", "100")]);
    let session = BrowserSession::open("cursor").await;
    let outcome = cursor_scenario(&session.browser, &example).await;
    session.close(outcome, &example).await;
}

/// `#hold` makes the page wait after `GET /comments` until the test lets it subscribe; the
/// comment posted in that gap reaches it through the list's `Livepush-Cursor`.
async fn cursor_scenario(browser: &Client, example: &Example) -> Result<(), String> {
    post_json(
        example.url("/comments"),
        json!({ "author": "Ann", "text": "already there" }),
    )
    .await?;
    browser
        .goto(&example.url("/#hold"))
        .await
        .map_err(|e| e.to_string())?;
    wait_until(
        browser,
        "the page holds before subscribing",
        |b| async move {
            b.execute("return window.crmHeld === true", vec![])
                .await
                .is_ok_and(|v| v == json!(true))
        },
    )
    .await;
    post_json(
        example.url("/comments"),
        json!({ "author": "Ben", "text": "posted in between" }),
    )
    .await?;
    browser
        .execute("window.crmRelease()", vec![])
        .await
        .map_err(|e| e.to_string())?;
    wait_connected(browser, "the page").await;
    wait_until(
        browser,
        "the page shows the comment posted in between",
        |b| async move {
            comment_texts(b)
                .await
                .iter()
                .any(|t| t == "posted in between")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = comment_texts(browser.clone()).await;
    if texts != ["posted in between", "already there"] {
        return Err(format!(
            "the page shows {texts:?}: expected each comment once"
        ));
    }
    Ok(())
}

/// Over HTTP/1.1 a browser opens about six connections per origin, so a seventh `EventSource`
/// waits. Over TLS with ALPN `h2` (`livepush::serve::serve_tls`) all streams share one connection:
/// this page opens eight and every one of them receives its event.
mod h2 {

    use axum::response::Html;
    use axum::routing::get;
    use axum::Router;
    use livepush::{subscribe_to_events, Hub, RouterExt};

    use super::*;

    #[subscribe_to_events]
    async fn events() {}

    const STREAMS: usize = 8;

    const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>eight streams</title>
<p id="state">starting</p>
<script>
  window.opened = 0;
  window.ticks = 0;
  for (let i = 0; i < 8; i++) {
    const source = new EventSource("/events?topic=t" + i);
    source.onopen = () => { window.opened++; };
    source.addEventListener("tick", () => { window.ticks++; });
  }
</script>"#;

    async fn page() -> Html<&'static str> {
        Html(PAGE)
    }

    /// `[opened, ticks, protocol of the page]` as the page sees them.
    async fn page_state(browser: &Client) -> (u64, u64, String) {
        let value = browser
            .execute(
                "return [window.opened || 0, window.ticks || 0, \
                 (performance.getEntriesByType('navigation')[0] || {}).nextHopProtocol || '']",
                vec![],
            )
            .await
            .unwrap_or_default();
        (
            value[0].as_u64().unwrap_or(0),
            value[1].as_u64().unwrap_or(0),
            value[2].as_str().unwrap_or_default().to_owned(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_opens_more_than_six_streams_over_tls_h2() {
        let chromium = required(
            "chromium",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let chromedriver = required(
            "chromedriver",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let hub = Hub::builder().build().unwrap();
        let app = Router::new()
            .route("/", get(page))
            .route("/events", get(events))
            .livepush(&hub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(std::future::IntoFuture::into_future(
            livepush::serve::serve_tls(listener, app, support::tls::certificate().1),
        ));
        let driver = ChromeDriver::start(&chromedriver).await;
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-profile-h2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        // the certificate is made by the test: Chromium is told to accept it
        let browser = open_browser(
            &driver,
            &chromium,
            &profile,
            &["--ignore-certificate-errors"],
        )
        .await;
        let outcome = async {
            browser
                .goto(&format!("https://127.0.0.1:{}/", addr.port()))
                .await
                .map_err(|e| e.to_string())?;
            let deadline = Instant::now() + PAGE_WAIT;
            while hub.connection_count() < STREAMS || page_state(&browser).await.0 < STREAMS as u64
            {
                if Instant::now() > deadline {
                    return Err(format!(
                        "{} of {STREAMS} streams open (page: {:?})",
                        hub.connection_count(),
                        page_state(&browser).await
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for i in 0..STREAMS {
                hub.publish(format!("t{i}"), "tick", &i)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let deadline = Instant::now() + PAGE_WAIT;
            loop {
                let (opened, ticks, protocol) = page_state(&browser).await;
                if ticks == STREAMS as u64 {
                    if protocol != "h2" {
                        return Err(format!("the page was loaded over {protocol:?}, not h2"));
                    }
                    return Ok(opened);
                }
                if Instant::now() > deadline {
                    return Err(format!("{ticks} of {STREAMS} streams got their event"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        .await;
        let _ = browser.close().await;
        drop(driver);
        let _ = std::fs::remove_dir_all(&profile);
        server.abort();
        let opened = outcome.unwrap_or_else(|message| panic!("{message}"));
        assert_eq!(opened, STREAMS as u64);
    }
}

/// chromedriver's log of the page's console (`goog:loggingPrefs` asks for it).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// The console messages at level SEVERE (errors) since the last call.
async fn console_errors(browser: &Client) -> Vec<String> {
    let log = browser
        .issue_cmd(BrowserLog)
        .await
        .unwrap_or_else(|e| panic!("chromedriver gives no browser log: {e}"));
    log.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The live admin page of `hub.admin_routes()`, in Chromium.
mod admin {
    use axum::routing::get;
    use axum::Router;
    use livepush::{subscribe_to_events, Hub, RouterExt};
    use support::{SseClient, TestServer};

    use super::*;

    #[subscribe_to_events]
    async fn events() {}

    async fn number(browser: &Client, id: &str) -> f64 {
        match browser.find(Locator::Id(id)).await {
            Ok(element) => element
                .text()
                .await
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(f64::NAN),
            Err(_) => f64::NAN,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_admin_page_draws_live_numbers_and_tails_a_topic_without_console_errors() {
        let hub = Hub::builder().build().unwrap();
        let app: Router = Router::new()
            .route("/events", get(events))
            .livepush(&hub)
            .merge(hub.admin_routes());
        let server = TestServer::start(app).await;
        let session = BrowserSession::open("admin").await;
        let browser = &session.browser;
        browser.goto(&server.url("/admin")).await.unwrap();
        wait_until(browser, "the stats stream is live", |b| async move {
            status_of(b).await == "live"
        })
        .await;
        assert_eq!(number(browser, "connections").await, 0.0);

        // A load: three streams, and publishes for a few seconds.
        let mut streams = Vec::new();
        for _ in 0..3 {
            streams.push(SseClient::connect(&server.url("/events?topic=load")).await);
        }
        let publisher = {
            let hub = hub.clone();
            tokio::spawn(async move {
                for n in 0..200u32 {
                    hub.publish("load", "tick", &json!({ "n": n }))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        };
        wait_until(browser, "3 connections on the page", |b| async move {
            number(&b, "connections").await == 3.0
        })
        .await;
        wait_until(
            browser,
            "a publish rate and a delivery rate",
            |b| async move {
                number(&b, "published-rate").await > 0.0 && number(&b, "delivered-rate").await > 0.0
            },
        )
        .await;
        wait_until(browser, "the topic in the table", |b| async move {
            match b.find(Locator::Css("#topics tr td")).await {
                Ok(td) => td.text().await.unwrap_or_default() == "load",
                Err(_) => false,
            }
        })
        .await;

        // The live tail of the topic.
        browser
            .find(Locator::Id("tail-topic"))
            .await
            .unwrap()
            .send_keys("load")
            .await
            .unwrap();
        browser
            .find(Locator::Id("tail-start"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until(browser, "tick events in the tail", |b| async move {
            match b.find(Locator::Id("tail-log")).await {
                Ok(log) => log
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains(" tick {\"n\":"),
                Err(_) => false,
            }
        })
        .await;

        let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target/tmp is in target/")
            .join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        let png = browser.screenshot().await.unwrap();
        std::fs::write(artifacts.join("admin.png"), png).unwrap();

        let errors = console_errors(browser).await;
        publisher.abort();
        drop(streams);
        let _ = session.browser.close().await;
        drop(session.driver);
        let _ = std::fs::remove_dir_all(&session.profile);
        assert!(errors.is_empty(), "console errors: {errors:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_one_page_sees_the_other_join_talk_and_leave() {
    let example = Example::start("chat", &[("LIVEPUSH_PRESENCE_GRACE_MS", "200")]);
    let session = BrowserSession::open("chat-profile").await;
    let outcome = run_chat_pages(&session.browser, &example).await;
    session.close(outcome, &example).await;
}

async fn run_chat_pages(browser: &Client, example: &Example) -> Result<(), String> {
    let page_a = browser.window().await.map_err(|e| e.to_string())?;
    browser
        .goto(&example.url("/?room=lobby&user=ann"))
        .await
        .map_err(|e| e.to_string())?;
    wait_connected(browser, "ann's page").await;
    wait_until(browser, "ann's page lists ann", |b| async move {
        texts(b, "#members li").await == ["ann"]
    })
    .await;

    let page_b = browser
        .new_window(false)
        .await
        .map_err(|e| e.to_string())?
        .handle;
    switch(browser, &page_b).await;
    browser
        .goto(&example.url("/?room=lobby&user=bob"))
        .await
        .map_err(|e| e.to_string())?;
    wait_connected(browser, "bob's page").await;
    wait_until(browser, "bob's page lists ann and bob", |b| async move {
        texts(b, "#members li").await == ["ann", "bob"]
    })
    .await;
    type_into(browser, "#text", "hello from bob").await?;
    click(browser, "#send button").await?;
    type_into(browser, "#topic-text", "Friday release").await?;
    click(browser, "#set-topic button").await?;

    // ann's page saw bob join, his message and the topic line, without doing anything
    switch(browser, &page_a).await;
    wait_until(browser, "ann's page lists bob", |b| async move {
        texts(b, "#members li").await == ["ann", "bob"]
    })
    .await;
    wait_until(browser, "ann's page says bob joined", |b| async move {
        texts(b, "#activity li")
            .await
            .contains(&"bob joined".to_owned())
    })
    .await;
    wait_until(browser, "ann's page shows bob's message", |b| async move {
        let messages = texts(b, "#messages li").await;
        messages.len() == 1
            && messages[0].starts_with("bob")
            && messages[0].ends_with("hello from bob")
    })
    .await;
    wait_until(browser, "ann's page shows the topic line", |b| async move {
        texts(b, "#topic").await == ["Friday release"]
    })
    .await;

    // bob closes his page: ann's page sees him leave
    switch(browser, &page_b).await;
    browser.close_window().await.map_err(|e| e.to_string())?;
    switch(browser, &page_a).await;
    wait_until(browser, "ann's page says bob left", |b| async move {
        texts(b, "#activity li")
            .await
            .contains(&"bob left".to_owned())
    })
    .await;
    wait_until(browser, "ann's page lists ann alone", |b| async move {
        texts(b, "#members li").await == ["ann"]
    })
    .await;
    let count = field(browser, "#count")
        .await
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if count != "1" {
        return Err(format!("ann's page counts {count} members, expected 1"));
    }
    Ok(())
}
