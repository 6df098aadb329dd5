//! API integration tests: one test binary (link time), modules by concern. Each test runs on
//! every available (database, session store) combination.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration-test helpers fail loudly; clippy exempts only #[test] bodies"
)]

mod answer;
mod assistant;
mod audit;
mod authz_matrix;
mod bad_input;
mod common;
mod embedded;
mod encryption;
mod flows;
mod monitoring;
mod serving;
mod web;
mod web_pages;
