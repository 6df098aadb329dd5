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

/// Prints how long each part of the flows took (for the docs and for finding slow steps).
struct Phases(std::time::Instant);

impl Phases {
    /// Ends the current part, named `name`; the next one starts now.
    fn done(&mut self, name: &str) {
        println!("  {name:<34} {:>5.1} s", self.0.elapsed().as_secs_f64());
        self.0 = std::time::Instant::now();
    }
}

/// Signs in through `/login` and `/login/totp` with a freshly computed code; waits until the
/// browser has left the sign-in pages. `shots`: names for the two pages' screenshots and checks.
async fn login(
    b: &Browser,
    audit: &mut Audit,
    medai: &Medai,
    username: &str,
    auth: &mut Authenticator,
    shots: Option<(&str, &str)>,
) {
    b.goto(&medai.url("/login")).await;
    b.fill("Username", username).await;
    b.fill("Password", PASSWORD).await;
    if let Some((first, _)) = shots {
        audit.check(b, first, false).await;
        b.shot(first).await;
    }
    b.click_button("Continue").await;
    b.wait_path("/login/totp").await;
    let code = b.field("6-digit code").await;
    if let Some((_, second)) = shots {
        audit.check(b, second, false).await;
        b.shot(second).await;
    }
    code.send_keys(&auth.code().await).await.unwrap();
    b.click_button("Sign in").await;
    b.wait_for("leaving the sign-in pages", || async {
        !b.path().await.starts_with("/login")
    })
    .await;
    b.wait_text(&format!("Signed in as {username}")).await;
}

/// The value of the `<option>` labelled `label` in the select `css`.
async fn option_value(b: &Browser, css: &str, label: &str) -> String {
    let select = b.el(css).await;
    for o in select
        .find_all(fantoccini::Locator::Css("option"))
        .await
        .unwrap()
    {
        if o.text().await.unwrap().trim() == label {
            return o.attr("value").await.unwrap().unwrap();
        }
    }
    b.fail(&format!("no option {label:?} in {css}")).await
}

/// Creates a user on the admin page; returns the enrolment link shown once (None for service
/// accounts).
async fn admin_create_user(
    b: &Browser,
    medai: &Medai,
    username: &str,
    role: &str,
    team: Option<&str>,
) -> Option<String> {
    b.goto(&medai.url("/admin/users")).await;
    b.fill("Username", username).await;
    b.field("Role").await.select_by_value(role).await.unwrap();
    if let Some(t) = team {
        b.field("Care team").await.select_by_label(t).await.unwrap();
    }
    b.click_button("Create user").await;
    if role == "service" {
        b.wait_text("Service accounts do not sign in").await;
        return None;
    }
    let link = b.el("#enrolment-link").await.text().await.unwrap();
    assert!(link.starts_with(&medai.url("/setup?token=")), "{link}");
    Some(link)
}

/// Registers a patient as the EHR feed would: the JSON API with a service token.
async fn register_patient(
    medai: &Medai,
    token: &str,
    mrn: &str,
    given: &str,
    family: &str,
    team_id: &str,
) -> String {
    let r = reqwest::Client::new()
        .post(medai.url("/api/v1/patients"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "mrn": mrn, "given_name": given, "family_name": family,
            "date_of_birth": "1961-07-14", "sex": "female", "care_team_ids": [team_id],
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// No horizontal scrolling at the current window size.
async fn fits_width(b: &Browser) -> bool {
    let v =
        b.c.execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    v.as_bool().unwrap_or(false)
}

async fn flows(driver_path: &std::ffi::OsStr) {
    let mut phase = Phases(std::time::Instant::now());
    let (upstream, llm) = upstream::start().await;
    // Checkpoints every second, so the audit page shows a signed one.
    let medai = Medai::start(&llm, "[audit]\ncheckpoint_interval = \"1s\"\n").await;
    let driver = Driver::start(driver_path).await;
    let mut audit = Audit::default();
    phase.done("medai, model server, chromedriver");
    let idle = idle_start(&driver, &llm, &mut audit).await;
    phase.done("idle warning (second server)");

    // First run: the administrator opens the printed one-time link.
    let admin = driver.browser("admin").await;

    // The accessibility checker itself finds each kind of fault on a page built to have them.
    let bad = a11y::findings_on_a_bad_page(&admin).await;
    for want in [
        "<html> has no lang",
        "no <title>",
        "no <main> landmark",
        "no <nav> landmark",
        "form control without a label: input#nameless",
        "form control without a label: select#dup",
        "id \"dup\" is used 2 times",
        "img without alt",
        "button without text",
        "contrast 2.32:1",
    ] {
        assert!(
            bad.iter().any(|f| f.contains(want)),
            "the checker missed {want:?}: {bad:?}"
        );
    }
    let (mut admin_auth, _admin_codes) = enrol(
        &admin,
        &mut audit,
        &medai.setup_url,
        Some("root-admin"),
        Some(("setup-password", "setup-totp", "setup-recovery-codes")),
    )
    .await;
    phase.done("setup");
    // The link is single-use: opening it again shows the error page with a request id.
    admin.goto(&medai.setup_url).await;
    admin.wait_text("request id").await;

    // Keyboard only: Tab from the top of the sign-in page reaches the username, the password
    // and the submit button in that order, each with a visible focus indicator.
    admin.goto(&medai.url("/login")).await;
    admin.el("#username").await;
    let order = a11y::tab_order(&admin, 8).await;
    let at = |want: &str| {
        order
            .iter()
            .position(|d| d.starts_with(want))
            .unwrap_or_else(|| panic!("Tab never reached {want}: {order:?}"))
    };
    let (u, p, s) = (
        at("input#username"),
        at("input#password"),
        at("button[submit]"),
    );
    assert!(u < p && p < s, "Tab order {order:?}");
    assert_eq!(p, u + 1, "nothing between username and password: {order:?}");
    assert_eq!(s, p + 1, "nothing between password and submit: {order:?}");
    let tabs = a11y::tab_order(&admin, u + 1).await;
    assert!(tabs[u].starts_with("input#username"), "{tabs:?}");
    assert!(
        a11y::focus_visible(&admin).await,
        "the focused field shows no focus indicator"
    );

    // The administrator signs in with the password and a computed TOTP code.
    login(
        &admin,
        &mut audit,
        &medai,
        "root-admin",
        &mut admin_auth,
        Some(("login", "login-code")),
    )
    .await;
    // An administrator's start page is user administration; no clinical navigation.
    admin.wait_path("/admin/users").await;
    let nav = admin.el("nav").await.text().await.unwrap();
    assert!(nav.contains("Users and care teams"), "{nav}");
    assert!(!nav.contains("My patients"), "{nav}");

    phase.done("keyboard and admin sign-in");
    // Two care teams, a clinician on the first, a service account and its token for the EHR
    // feed, and one patient on each team.
    for team in ["cardiology", "oncology"] {
        admin.goto(&medai.url("/admin/users")).await;
        admin.fill("New care team name", team).await;
        admin.click_button("Create care team").await;
        admin
            .xpath(
                &format!("team {team}"),
                &format!("//h3[normalize-space(.)='{team}']"),
            )
            .await;
    }
    let clinician_link =
        admin_create_user(&admin, &medai, "dr-grey", "clinician", Some("cardiology"))
            .await
            .unwrap();
    audit.check(&admin, "admin-enrolment-link", true).await;
    admin.shot("admin-enrolment-link").await;
    admin_create_user(&admin, &medai, "ehr-feed", "service", None).await;
    admin.goto(&medai.url("/admin/users")).await;
    admin.wait_text("dr-grey").await;
    let cardiology = option_value(&admin, "#new-team", "cardiology").await;
    let oncology = option_value(&admin, "#new-team", "oncology").await;
    audit.check(&admin, "admin-users", true).await;
    admin.shot("admin-users").await;

    admin.goto(&medai.url("/admin/tokens")).await;
    admin.fill("Name", "ADT feed").await;
    admin.click_button("Create token").await;
    let token = admin.el("#new-token").await.text().await.unwrap();
    assert!(token.starts_with("medai_"), "{token}");
    audit.check(&admin, "admin-tokens", true).await;
    admin.shot("admin-tokens").await;

    let own = register_patient(&medai, &token, "MRN-70001", "Ada", "Okafor", &cardiology).await;
    let other = register_patient(&medai, &token, "MRN-80002", "Bert", "Lindqvist", &oncology).await;

    // A compliance officer created with the CLI while the server runs, as an operator would.
    let out = medai.cli(&["user", "add", "audit-lee", "--role", "compliance_officer"]);
    let compliance_link = out
        .lines()
        .find(|l| l.contains("/setup?token="))
        .unwrap_or_else(|| panic!("no link in {out}"))
        .trim()
        .to_owned();

    phase.done("administration");
    // The clinician enrols from the link and signs in.
    let clin = driver.browser("clinician").await;
    let (mut clin_auth, _) = enrol(&clin, &mut audit, &clinician_link, None, None).await;
    login(&clin, &mut audit, &medai, "dr-grey", &mut clin_auth, None).await;
    clin.wait_path("/patients").await;
    // Only the own care team's patient is listed; search by name and by MRN find her.
    clin.wait_text("Okafor").await;
    assert!(!clin.text().await.contains("Lindqvist"));
    audit.check(&clin, "patients", true).await;
    clin.shot("patients").await;
    clin.fill("Name", "okaf").await;
    clin.click_button("Search").await;
    clin.wait_text("Patients matching the search (1)").await;
    clin.fill("Name", "").await;
    clin.fill("MRN", "MRN-80002").await;
    clin.click_button("Search").await;
    clin.wait_text("No patient on your care teams matches this search")
        .await;

    phase.done("clinician enrolment and patients");
    // The patient page, on a laptop and on a tablet.
    clin.goto(&medai.url(&format!("/patients/{own}"))).await;
    clin.wait_text("Demographics").await;
    clin.wait_text("MRN-70001").await;
    audit.check(&clin, "patient", true).await;
    clin.shot("patient").await;
    assert!(
        fits_width(&clin).await,
        "the patient page scrolls sideways at 1280 px"
    );
    clin.c.set_window_size(820, 1180).await.unwrap();
    clin.wait_for("the tablet viewport", || async {
        let w = clin.c.execute("return window.innerWidth;", vec![]).await;
        w.ok().and_then(|v| v.as_u64()) == Some(820)
    })
    .await;
    assert!(
        fits_width(&clin).await,
        "the patient page scrolls sideways on a tablet"
    );
    audit.check(&clin, "patient-tablet", true).await;
    clin.shot("patient-tablet").await;
    clin.c.set_window_size(1280, 900).await.unwrap();

    phase.done("patient page");
    // A conversation: the question triggers the chest-pain escalation, and the answer streams in.
    clin.fill("Start a conversation: topic", "Chest pain follow-up")
        .await;
    clin.click_button("Start conversation").await;
    clin.wait_for("the conversation page", || async {
        clin.path().await.starts_with("/conversations/")
    })
    .await;
    let conversation = clin.path().await;
    const QUESTION: &str =
        "Substernal chest pain for 40 minutes, diaphoretic; troponin flat at six hours. Next steps?";
    clin.fill("Your question about this patient", QUESTION)
        .await;
    clin.click_button("Ask the assistant").await;
    let full = upstream::full_answer();
    // Poll the live answer as fast as WebDriver allows (one script call reads the answer, the
    // line under it and the escalation at once): a proper prefix of the answer must show before
    // the whole of it (the upstream pauses 400 ms between pieces), then the model line, all
    // before the page reloads with the stored answer.
    const LIVE: &str = "const t = document.getElementById('live-answer-text');\
        const live = document.getElementById('live-answer');\
        const meta = live ? live.querySelector('.meta') : null;\
        const esc = document.getElementById('live-escalation');\
        const q = document.querySelector('#live-question .text');\
        const none = document.getElementById('no-questions');\
        return [t ? t.textContent : null, meta ? meta.textContent : '', esc ? esc.textContent : '',\
          q ? q.textContent : null, none ? !none.hidden : false];";
    let model_line = format!("Model browser-model, version {}", upstream::UPSTREAM_MODEL);
    let mut partial: Option<String> = None;
    let mut escalation = String::new();
    let mut whole = false;
    let deadline = std::time::Instant::now() + harness::WAIT;
    loop {
        let v = clin.c.execute(LIVE, vec![]).await.unwrap_or_default();
        let text = v[0].as_str();
        let meta = v[1].as_str().unwrap_or_default();
        if escalation.is_empty() {
            escalation = v[2].as_str().unwrap_or_default().to_owned();
        }
        match text {
            None if partial.is_some() => {
                clin.fail("the page reloaded before the answer and its model line were seen")
                    .await
            }
            Some(t) if t == full => whole = true,
            Some(t) if !t.is_empty() => {
                assert!(!whole, "the answer shrank after it was complete: {t:?}");
                assert!(full.starts_with(t), "streamed text {t:?} is not a prefix");
                if partial.is_none() {
                    // The question shows above the answer while it streams.
                    assert_eq!(
                        v[3].as_str(),
                        Some(QUESTION),
                        "the question while streaming"
                    );
                    assert_eq!(
                        v[4].as_bool(),
                        Some(false),
                        "'No questions yet' while streaming"
                    );
                    clin.shot("chat-streaming").await;
                    partial = Some(t.to_owned());
                }
            }
            _ => {}
        }
        if whole && meta.contains(&model_line) {
            break;
        }
        if std::time::Instant::now() > deadline {
            clin.fail(&format!(
                "timed out waiting for the whole streamed answer and {model_line:?}"
            ))
            .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let partial = partial.expect("the answer appeared all at once, not streamed");
    println!(
        "streaming: saw {} of {} characters before the end",
        partial.len(),
        full.len()
    );
    assert!(
        escalation.contains("Escalation: Possible acute coronary syndrome"),
        "the escalation shown while streaming: {escalation:?}"
    );
    // The page then reloads with the stored answer, its model and the feedback form.
    clin.xpath(
        "the stored answer",
        &format!(
            "//li[contains(@class, 'answer')]//p[@class='text' and normalize-space(.)={:?}]",
            full.trim()
        ),
    )
    .await;
    clin.wait_text("Safety escalation").await;
    let stored = clin.el("li.answer").await.text().await.unwrap();
    assert!(
        stored.contains("browser-model") && stored.contains(upstream::UPSTREAM_MODEL),
        "model and version under the answer: {stored}"
    );
    assert_eq!(upstream.seen.lock().unwrap().len(), 1, "one model call");
    audit.check(&clin, "chat", true).await;
    clin.c
        .execute(
            "document.querySelector('li.answer').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    clin.shot("chat-answer").await;

    phase.done("streamed answer");
    // Feedback: not helpful, unsafe, with a comment; the page confirms and keeps the choice.
    clin.el("input[name=helpful][value=not_helpful]")
        .await
        .click()
        .await
        .unwrap();
    clin.el("input[name=verdict][value=unsafe]")
        .await
        .click()
        .await
        .unwrap();
    clin.fill(
        "Comment (optional)",
        "Should mention aspirin unless contraindicated.",
    )
    .await;
    clin.click_button("Send feedback").await;
    clin.wait_text("your feedback was saved").await;
    let checked = clin
        .el("input[name=verdict][value=unsafe]")
        .await
        .prop("checked")
        .await
        .unwrap();
    assert_eq!(
        checked.as_deref(),
        Some("true"),
        "the saved verdict is shown"
    );
    clin.shot("chat-feedback").await;

    phase.done("feedback");
    // Another team's patient: refused, with the break-glass form; a reason opens the record.
    clin.goto(&medai.url(&format!("/patients/{other}"))).await;
    clin.wait_text("This patient is not on your care teams")
        .await;
    assert!(
        !clin.text().await.contains("Lindqvist"),
        "no data before the grant"
    );
    clin.wait_text("recorded in the audit log").await;
    audit.check(&clin, "break-glass", true).await;
    clin.shot("break-glass").await;
    clin.fill(
        "Reason for access",
        "Patient arrived in our ED unconscious; oncology on-call unreachable.",
    )
    .await;
    clin.click_button("Open the record (recorded)").await;
    clin.wait_text("Emergency access granted").await;
    clin.wait_text("Lindqvist").await;
    let left = clin.el("#grant-left").await.text().await.unwrap();
    assert!(!left.trim().is_empty(), "time left of the grant is shown");
    audit.check(&clin, "break-glass-granted", true).await;
    clin.shot("break-glass-granted").await;

    phase.done("break-glass");
    // Error pages: a clinician on an admin page (403) and an unknown page (404), each with a
    // request id and no internal detail.
    for (path, status, name) in [
        ("/admin/users", "403", "error-403"),
        ("/no-such-page", "404", "error-404"),
    ] {
        clin.goto(&medai.url(path)).await;
        clin.wait_text(&format!("Error {status}")).await;
        clin.wait_text("request id").await;
        let id = clin.el("main code").await.text().await.unwrap();
        // The id is the one the server logged for this request, so support can find it.
        let line = medai
            .access_log()
            .into_iter()
            .find(|l| l["request_id"] == id.trim())
            .unwrap_or_else(|| panic!("no access log line with request id {id:?}"));
        assert_eq!(line["status"].to_string(), status, "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        audit.check(&clin, name, false).await;
        clin.shot(name).await;
    }

    // Without JavaScript: a second clinician (created with the CLI) enrols, signs in and asks;
    // the form posts and the page shows the whole answer when it has loaded.
    phase.done("error pages");
    let out = medai.cli(&[
        "user",
        "add",
        "dr-plain",
        "--role",
        "clinician",
        "--care-team",
        "cardiology",
    ]);
    let plain_link = out
        .lines()
        .find(|l| l.contains("/setup?token="))
        .unwrap()
        .trim()
        .to_owned();
    let plain = driver.browser_with("no-javascript", false).await;
    let (mut plain_auth, _) = enrol(&plain, &mut audit, &plain_link, None, None).await;
    login(
        &plain,
        &mut audit,
        &medai,
        "dr-plain",
        &mut plain_auth,
        None,
    )
    .await;
    plain.goto(&medai.url(&format!("/patients/{own}"))).await;
    plain
        .fill("Start a conversation: topic", "Without scripts")
        .await;
    plain.click_button("Start conversation").await;
    plain
        .wait_for("the conversation page", || async {
            plain.path().await.starts_with("/conversations/")
        })
        .await;
    plain
        .fill(
            "Your question about this patient",
            "Is the troponin trend reassuring?",
        )
        .await;
    plain.click_button("Ask the assistant").await;
    plain
        .xpath(
            "the whole answer after the form post",
            &format!(
                "//li[contains(@class, 'answer')]//p[@class='text' and normalize-space(.)={:?}]",
                full.trim()
            ),
        )
        .await;
    // The question went through the form post, not the script's call to the streaming API: of
    // the two questions asked, one used each.
    let posts = |route: &str| {
        medai
            .access_log()
            .iter()
            .filter(|l| l["method"] == "POST" && l["route"] == route)
            .count()
    };
    assert_eq!(
        posts("/conversations/{id}/ask"),
        1,
        "one question by form post"
    );
    assert_eq!(
        posts("/api/v1/conversations/{id}/messages"),
        1,
        "one question streamed by the script"
    );
    plain.shot("chat-no-javascript").await;
    plain.close().await;
    assert_eq!(upstream.seen.lock().unwrap().len(), 2, "two model calls");
    phase.done("chat without JavaScript");

    // The compliance officer sees the refusal, the break-glass grant and the unsafe answer.
    let comp = driver.browser("compliance").await;
    let (mut comp_auth, comp_codes) = enrol(&comp, &mut audit, &compliance_link, None, None).await;
    login(&comp, &mut audit, &medai, "audit-lee", &mut comp_auth, None).await;
    comp.wait_path("/compliance/audit").await;
    comp.wait_text("Integrity of the log").await;
    let integrity = comp.el("main dl").await.text().await.unwrap();
    assert!(
        integrity.contains("signed"),
        "a signed checkpoint: {integrity}"
    );
    comp.fill("Patient id", &other).await;
    comp.click_button("Filter").await;
    comp.wait_text("patient.break_glass").await;
    let table = comp.el("main table").await.text().await.unwrap();
    assert!(table.contains("access.denied"), "{table}");
    assert!(table.contains("dr-grey"), "{table}");
    audit.check(&comp, "audit", true).await;
    comp.shot("audit").await;
    comp.click_link("Break-glass review").await;
    comp.wait_text("oncology on-call unreachable").await;
    audit.check(&comp, "compliance-break-glass", true).await;
    comp.shot("compliance-break-glass").await;
    comp.click_link("Safety overrides").await;
    comp.wait_text("\"verdict\":\"unsafe\"").await;
    let overrides = comp.el("main table").await.text().await.unwrap();
    assert!(
        overrides.contains(&own)
            && overrides.contains("dr-grey")
            && overrides.contains(upstream::UPSTREAM_MODEL),
        "the unsafe answer with its patient, clinician and model version: {overrides}"
    );
    audit.check(&comp, "compliance-overrides", true).await;
    comp.shot("compliance-overrides").await;
    // The officer has no administration or clinical navigation, and the server refuses it.
    let nav = comp.el("nav").await.text().await.unwrap();
    assert!(
        !nav.contains("My patients") && !nav.contains("Users"),
        "{nav}"
    );
    comp.goto(&medai.url(&format!("/patients/{own}"))).await;
    comp.wait_text("Error 403").await;
    // Signing out ends the session.
    comp.goto(&medai.url("/compliance/audit")).await;
    comp.click_button("Sign out").await;
    comp.wait_text("You are signed out").await;
    // Back to a page while signed out: the sign-in page, then (with a recovery code instead of
    // the authenticator) back to that page.
    comp.goto(&medai.url("/compliance/break-glass")).await;
    comp.wait_path("/login").await;
    comp.fill("Username", "audit-lee").await;
    comp.fill("Password", PASSWORD).await;
    comp.click_button("Continue").await;
    comp.wait_path("/login/totp").await;
    comp.click_link("Use a recovery code").await;
    comp.wait_path("/login/recovery").await;
    comp.fill("Recovery code", &comp_codes[0]).await;
    audit.check(&comp, "login-recovery", false).await;
    comp.click_button("Sign in").await;
    comp.wait_path("/compliance/break-glass").await;
    comp.wait_text("Signed in as audit-lee").await;
    comp.close().await;

    phase.done("compliance");
    // The administrator disables the clinician; the clinician's next page load is the sign-in
    // page.
    clin.goto(&medai.url("/patients")).await;
    clin.wait_text("Okafor").await;
    admin.goto(&medai.url("/admin/users")).await;
    admin
        .el("button[aria-label='Disable dr-grey']")
        .await
        .click()
        .await
        .unwrap();
    admin
        .wait_for("dr-grey shown as disabled", || async {
            match admin.c.find(fantoccini::Locator::Id("u-dr-grey")).await {
                Ok(row) => row.text().await.is_ok_and(|t| t.contains("disabled")),
                Err(_) => false,
            }
        })
        .await;
    audit.check(&admin, "admin-users-disabled", true).await;
    clin.goto(&medai.url(&conversation)).await;
    clin.wait_path("/login").await;
    clin.wait_text("Sign in").await;
    clin.close().await;
    admin.close().await;

    phase.done("disable");
    // Everything the flows did left the audit log intact, as the operator's check sees it.
    let verify = medai.cli(&["audit", "verify"]);
    assert!(verify.contains("OK: the audit log verifies"), "{verify}");
    println!("medai audit verify: {}", verify.trim());

    phase.done("audit verify");
    idle_finish(idle).await;
    phase.done("automatic logoff (waits out 61 s idle)");

    audit.finish();
    println!("screenshots in {}", driver.screenshot_dir().display());
}

/// A second server with the shortest idle timeout (61 s) and one signed-in administrator.
struct Idle {
    medai: Medai,
    b: Browser,
    /// Just before the browser's last request.
    last_activity: std::time::Instant,
}

/// The idle warning shows (at once, as the timeout is one minute) on a signed-in page, and
/// "Stay signed in" closes it. The browser is then left alone while the other flows run.
async fn idle_start(driver: &Driver, llm: &str, audit: &mut Audit) -> Idle {
    let medai = Medai::start(llm, "[auth]\nsession_idle_timeout = \"61s\"\n").await;
    let b = driver.browser("idle").await;
    let (mut auth, _) = enrol(&b, audit, &medai.setup_url, Some("idle-admin"), None).await;
    login(&b, audit, &medai, "idle-admin", &mut auth, None).await;
    let warning = b.el("#idle-warning").await;
    b.wait_for("the idle warning", || async {
        warning.is_displayed().await.unwrap_or(false)
    })
    .await;
    b.wait_text("You will be signed out in one minute").await;
    audit.check(&b, "idle-warning", true).await;
    b.shot("idle-warning").await;
    b.click_button("Stay signed in").await;
    b.wait_for("the warning to close", || async {
        !warning.is_displayed().await.unwrap_or(true)
    })
    .await;
    let last_activity = std::time::Instant::now();
    b.goto(&medai.url("/admin/users")).await;
    b.wait_text("Signed in as idle-admin").await;
    Idle {
        medai,
        b,
        last_activity,
    }
}

/// Automatic logoff: a minute after the last request the page itself goes to the sign-in page
/// saying the session ended, and the server has ended the session too.
async fn idle_finish(idle: Idle) {
    let Idle {
        medai,
        b,
        last_activity,
    } = idle;
    let timeout = std::time::Duration::from_secs(61);
    let deadline = last_activity + timeout + std::time::Duration::from_secs(30);
    while b.path().await != "/login" {
        if std::time::Instant::now() > deadline {
            b.fail("no automatic logoff 90 s after the last activity")
                .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        last_activity.elapsed() >= timeout,
        "signed out after only {:?}",
        last_activity.elapsed()
    );
    b.wait_text("Your session ended").await;
    b.shot("idle-signed-out").await;
    // The server's own idle timeout (counted in whole seconds) has passed too: a page load now
    // is refused and leads to sign-in. Wait out two more seconds of margin first, by the clock.
    while last_activity.elapsed() < timeout + std::time::Duration::from_secs(2) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    b.goto(&medai.url("/admin/users")).await;
    b.wait_path("/login").await;
    b.close().await;
}
