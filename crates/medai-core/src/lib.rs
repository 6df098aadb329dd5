//! Domain types and rules of medai: identities, roles and permissions, patients, audit events,
//! login throttling and configuration.
//!
//! This crate holds decisions, not I/O: it never touches the network, the file system, a database
//! driver or the web framework. Time comes in through [`clock::Clock`] so that every rule that
//! depends on it (TOTP windows, session timeouts, lockouts) is tested without sleeping.

pub mod audit;
pub mod authz;
pub mod clock;
pub mod config;
pub mod identity;
pub mod net;
pub mod patient;
pub mod throttle;

pub use authz::{Action, Role};
pub use clock::{Clock, ManualClock, SystemClock};
