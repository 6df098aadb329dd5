//! medai's answer-path safety checks.
//!
//! **Triage** ([`RuleSet::triage`]) recognises red flags — a possible acute coronary syndrome,
//! stroke, anaphylaxis, suicidal ideation, sepsis, severe bleeding, fever in a young infant and
//! more — in a clinician's question and the patient context it is asked about, so that the
//! answer can open with an escalation notice. The rules are data (`rules/triage-v1.toml`),
//! versioned and reviewed like code; the engine only knows words, context cues (negation, past
//! history, hypotheticals, teaching questions) and a few measured findings (temperature, blood
//! pressure, heart and breathing rate, saturation, infant age).
//!
//! **The output check** ([`mask_unknown_identifiers`]) masks identifier-shaped text in a model's
//! answer that the request did not carry: a possible PHI leak.
//!
//! [`eval`] scores a rule set against labelled cases.
//!
//! This crate never logs and does no I/O except [`RuleSet::from_path`]. Triage results carry
//! rule ids and byte offsets, never the text, so they can be audited and counted without PHI.
//! Every function is linear in its input and total: arbitrary text cannot make it panic.

mod engine;
pub mod eval;
mod features;
mod lexicon;
mod output;
mod rules;
mod text;

pub use engine::{Evidence, Hit, Triage};
pub use output::{mask_unknown_identifiers, mask_with, Masked, CHECKED_TYPES};
pub use rules::{Rule, RuleError, RuleSet, BUILTIN_RULES};
