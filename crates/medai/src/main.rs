//! The `medai` binary: `serve` and the operations CLI. Wiring only: configuration, logging and
//! calls into the library crates. Standard output carries command results (and the first-run
//! setup link on its own line); logs go to standard error.

mod audit_ops;
mod cli;
mod config;
mod healthcheck;
mod lines;
mod model_ops;
mod models;
mod ops;
mod phi;
mod serve_model;
mod telemetry;
mod triage;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Once, before anything can use TLS: the redis client takes rustls's process default.
    if let Err(e) = medai_store::redis_tls::install_crypto_provider() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ops::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
