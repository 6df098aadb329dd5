//! Accessibility checks: `a11y.js` run in the page (labels, alt text, landmarks, lang, title,
//! unique ids, text contrast), and keyboard order with real Tab key presses.

use crate::harness::Browser;
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::key::Key;

const SCRIPT: &str = include_str!("a11y.js");

/// Findings on every page checked, kept until the end so that one bad page does not hide the
/// others (and the remaining flows still run).
#[derive(Default)]
pub struct Audit {
    findings: Vec<String>,
    pages: Vec<String>,
}

impl Audit {
    /// Runs the in-page checks on the current page of `b`, naming it `page`. `nav`: the page
    /// belongs to a signed-in area and must have a navigation landmark.
    pub async fn check(&mut self, b: &Browser, page: &str, nav: bool) {
        let out =
            b.c.execute(SCRIPT, vec![serde_json::Value::Bool(nav)])
                .await
                .unwrap_or_else(|e| panic!("a11y script failed on {page}: {e}"));
        let list = out.as_array().cloned().unwrap_or_default();
        for f in list {
            self.findings
                .push(format!("{page}: {}", f.as_str().unwrap_or("?")));
        }
        self.pages.push(page.to_owned());
    }

    /// Fails the test listing every finding; prints the pages checked otherwise.
    pub fn finish(self) {
        assert!(
            self.findings.is_empty(),
            "accessibility findings:\n{}",
            self.findings.join("\n")
        );
        println!(
            "accessibility: no findings on {} pages: {}",
            self.pages.len(),
            self.pages.join(", ")
        );
    }
}

/// Runs the checks on a page written to fail each of them and returns the findings, so a check
/// that silently stopped finding anything fails the test.
pub async fn findings_on_a_bad_page(b: &Browser) -> Vec<String> {
    b.goto("about:blank").await;
    b.c.execute(
        "document.documentElement.removeAttribute('lang'); document.title = '';\
         document.body.innerHTML = '<div style=\"background:#ffffff\">\
           <p style=\"color:#aaaaaa\">Pale text</p>\
           <input id=\"nameless\"><select id=\"dup\"></select><span id=\"dup\"></span>\
           <img src=\"x.png\"><button></button></div>';",
        vec![],
    )
    .await
    .unwrap();
    let out =
        b.c.execute(SCRIPT, vec![serde_json::Value::Bool(true)])
            .await
            .unwrap();
    out.as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Presses Tab `n` times from the top of the page and returns, for each press, a description
/// of the focused element (`tag#id`, `tag[type]`).
pub async fn tab_order(b: &Browser, n: usize) -> Vec<String> {
    // Start from the top of the document: focus a non-tabbable marker placed before everything
    // else (blurring would leave the navigation starting point at the autofocused field).
    b.c.execute(
        "let m = document.getElementById('a11y-start');\
         if (!m) { m = document.createElement('span'); m.id = 'a11y-start'; m.tabIndex = -1;\
           document.body.insertBefore(m, document.body.firstChild); }\
         m.focus(); window.scrollTo(0, 0);",
        vec![],
    )
    .await
    .unwrap();
    let mut order = Vec::new();
    for _ in 0..n {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Tab.into(),
            });
        b.c.perform_actions(tab).await.unwrap();
        let d =
            b.c.execute(
                "const e = document.activeElement; if (!e || e === document.body) return 'body';\
                 let d = e.tagName.toLowerCase(); if (e.id) d += '#' + e.id;\
                 const t = e.getAttribute('type'); if (t) d += '[' + t + ']'; return d;",
                vec![],
            )
            .await
            .unwrap();
        order.push(d.as_str().unwrap_or("?").to_owned());
    }
    order
}

/// Whether the focused element shows a visible focus indicator (an outline or a box shadow).
pub async fn focus_visible(b: &Browser) -> bool {
    let v =
        b.c.execute(
            "const e = document.activeElement; if (!e || e === document.body) return false;\
             const s = getComputedStyle(e);\
             const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;\
             return outline || (s.boxShadow && s.boxShadow !== 'none');",
            vec![],
        )
        .await
        .unwrap();
    v.as_bool().unwrap_or(false)
}
