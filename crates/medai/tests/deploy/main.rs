//! Deployment checks: `medai healthcheck` against a real `medai serve` process, and the Terraform
//! stacks under deploy/terraform parsed and cross-checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test"
)]

mod healthcheck;
mod terraform;
