//! API integration tests: one test binary (link time), modules by concern. Each test runs on
//! every available (database, session store) combination.

mod authz_matrix;
mod bad_input;
mod common;
mod flows;
mod serving;
