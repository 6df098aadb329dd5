//! medai's PHI protection: the control that keeps patient identifiers away from every model.
//!
//! [`Detector`] finds the HIPAA Safe Harbor identifiers (45 CFR 164.514(b)(2)) that occur in free
//! clinical text and returns them as byte spans with a type and a confidence. [`Vault`] replaces
//! them with consistent, format-preserving surrogates for one conversation and turns a model's
//! answer back into the real values. [`eval`] scores detection on a labelled corpus.
//!
//! This crate performs no I/O and never logs: the surrogate map lives in memory only, its
//! strings are zeroised on drop, and its `Debug` output shows counts, never values. Detection is
//! linear in the input (no backtracking patterns), so adversarial text cannot stall it.

pub mod detect;
mod dict;
pub mod eval;
mod surrogate;
mod text;
mod types;

pub use detect::Detector;
pub use surrogate::{Deidentified, Vault};
pub use types::{PhiType, Span};
