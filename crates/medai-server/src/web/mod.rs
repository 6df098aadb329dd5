//! Server-rendered pages. For now the single-use setup and enrolment link, so the link printed
//! at first run (and by `medai user add`) works in a browser with no JavaScript. The pages post
//! plain forms; the link's 256-bit token, carried in a hidden field, is what authorises them.

pub mod setup;

use axum::Router;

/// The page routes.
pub fn routes() -> Router<crate::state::AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/setup", get(setup::show).post(setup::password))
        .route("/setup/confirm", post(setup::confirm))
}
