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

/// Presses Tab `n` times from the top of the page and returns, for each press, a description
/// of the focused element (`tag#id`, `tag[type]`).
pub async fn tab_order(b: &Browser, n: usize) -> Vec<String> {
    // Start from the document itself: no element focused.
    b.c.execute(
        "if (document.activeElement) { document.activeElement.blur(); } window.scrollTo(0, 0);",
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
