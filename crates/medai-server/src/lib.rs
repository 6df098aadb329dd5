//! The medai HTTP server: the JSON API under `/api/v1`, health endpoints, authentication
//! (password + TOTP, sessions, service tokens), server-side authorisation on every route,
//! metrics on a separate internal listener, and graceful shutdown.
//!
//! Handlers are thin: extract (the [`extract::Principal`] extractor authenticates), authorise
//! ([`authz`]), call storage, audit in the same transaction, map errors ([`ApiError`]). This crate
//! never logs PHI: log lines and spans carry route templates and opaque ids only.

pub mod accounts;
pub mod api;
pub mod assistant;
pub mod audit_log;
pub mod authz;
pub mod bootstrap;
pub mod error;
pub mod extract;
pub mod metrics;
mod middleware;
pub mod monitor;
pub mod serve;
pub mod session;
pub mod state;
pub mod web;

pub use error::ApiError;
pub use state::{AppState, Shared};
