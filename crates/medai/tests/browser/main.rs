//! The clinician web UI as people use it: headless Chromium, driven through chromedriver, against
//! the real `medai serve` binary on the embedded defaults and a small streaming
//! OpenAI-compatible model server started here. Skipped (with a line saying so) unless
//! `MEDAI_TEST_CHROMEDRIVER` names a chromedriver; `.ci/run` installs Debian's `chromium` and
//! `chromium-driver` and sets it. See `docs/browser-tests.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "integration test"
)]

mod a11y;
mod harness;
mod upstream;

use a11y::Audit;
use harness::{Authenticator, Browser, Driver, Medai};

/// Every account's password in these tests.
const PASSWORD: &str = "correct horse battery staple 7";

#[test]
fn clinician_web_ui_end_to_end() {
    let Some(driver) = std::env::var_os("MEDAI_TEST_CHROMEDRIVER") else {
        println!(
            "browser tests skipped: set MEDAI_TEST_CHROMEDRIVER=/usr/bin/chromedriver \
             (Debian's chromium-driver) to run them"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    rt.block_on(flows(&driver));
    println!(
        "browser flows passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The base32 key printed on the enrolment page (`Key for manual entry: <code>…</code>`).
async fn shown_secret(b: &Browser) -> String {
    let code = b.el("figcaption code").await;
    code.text().await.unwrap()
}

/// Completes a setup or enrolment link in `b`: password (and username for the first
/// administrator), then the TOTP code computed from the key the page shows. Returns the
/// authenticator and the recovery codes shown once.
async fn enrol(
    b: &Browser,
    audit: &mut Audit,
    link: &str,
    username: Option<&str>,
    shots: Option<(&str, &str, &str)>,
) -> (Authenticator, Vec<String>) {
    b.goto(link).await;
    b.el("form").await;
    if let Some(u) = username {
        b.fill("Username", u).await;
    }
    b.fill("Password", PASSWORD).await;
    b.fill("Repeat the password", PASSWORD).await;
    if let Some((first, _, _)) = shots {
        audit.check(b, first, false).await;
        b.shot(first).await;
    }
    b.click_button("Continue").await;
    let secret = shown_secret(b).await;
    let mut auth = Authenticator::from_base32(&secret);
    // The QR code is an inline SVG rendered by the server.
    b.el("figure svg").await;
    if let Some((_, second, _)) = shots {
        audit.check(b, second, false).await;
        b.shot(second).await;
    }
    b.fill("code", &auth.code().await).await;
    b.click_button("Confirm").await;
    b.wait_text("Save these recovery codes now").await;
    let items =
        b.c.find_all(fantoccini::Locator::Css("main ol li code"))
            .await
            .unwrap();
    let mut codes = Vec::new();
    for i in items {
        codes.push(i.text().await.unwrap());
    }
    assert_eq!(codes.len(), 10, "ten recovery codes");
    if let Some((_, _, third)) = shots {
        audit.check(b, third, false).await;
        b.shot(third).await;
    }
    (auth, codes)
}

async fn flows(driver_path: &std::ffi::OsStr) {
    let (_upstream, llm) = upstream::start().await;
    let medai = Medai::start(&llm, "").await;
    let driver = Driver::start(driver_path).await;
    let mut audit = Audit::default();

    // First run: the administrator opens the printed one-time link.
    let admin = driver.browser("admin").await;
    let (_admin_auth, _admin_codes) = enrol(
        &admin,
        &mut audit,
        &medai.setup_url,
        Some("root-admin"),
        Some(("setup-password", "setup-totp", "setup-recovery-codes")),
    )
    .await;
    // The link is single-use: opening it again shows the error page with a request id.
    admin.goto(&medai.setup_url).await;
    admin.wait_text("request id").await;

    admin.close().await;
    audit.finish();
    println!("screenshots in {}", driver.screenshot_dir().display());
}
