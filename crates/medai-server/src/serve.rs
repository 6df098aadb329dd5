//! Listening: the public listener (plain or TLS 1.3 via rustls) and the internal metrics
//! listener, with graceful shutdown that lets in-flight requests finish.

use crate::api::{app, metrics_app};
use crate::state::AppState;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use medai_core::config::{TlsConfig, TlsVersion};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// A running server.
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    handle: Handle,
    metrics_handle: Handle,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Starts graceful shutdown: no new connections; in-flight requests get `grace` to finish.
    pub fn shutdown(&self, grace: std::time::Duration) {
        self.handle.graceful_shutdown(Some(grace));
        self.metrics_handle.graceful_shutdown(Some(grace));
    }

    /// Waits until both listeners have stopped.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.task
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?
    }
}

/// Builds the rustls configuration: TLS 1.3 only unless `min_version = "1.2"`.
pub fn rustls_config(tls: &TlsConfig) -> Result<rustls::ServerConfig, ServeError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())))
    };
    let cert_pem = read(&tls.cert_path)?;
    let key_pem = read(&tls.key_path)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", tls.cert_path.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{}: no certificate found",
            tls.cert_path.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", tls.key_path.display())))?
        .ok_or_else(|| {
            ServeError::Tls(format!("{}: no private key found", tls.key_path.display()))
        })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(l)
}

/// Binds both listeners and starts serving in the background.
pub async fn start(state: AppState) -> Result<Running, ServeError> {
    let cfg = &state.config;
    let public = bind(cfg.listen)?;
    let metrics = bind(cfg.metrics_listen)?;
    let addr = public.local_addr()?;
    let metrics_addr = metrics.local_addr()?;
    let tls = match &cfg.tls {
        Some(t) => Some(RustlsConfig::from_config(Arc::new(rustls_config(t)?))),
        None => None,
    };
    let handle = Handle::new();
    let metrics_handle = Handle::new();
    let api = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let internal = metrics_app(state).into_make_service();
    let (h1, h2) = (handle.clone(), metrics_handle.clone());
    let task = tokio::spawn(async move {
        let public_srv = async move {
            match tls {
                Some(t) => {
                    axum_server::from_tcp_rustls(public, t)
                        .handle(h1)
                        .serve(api)
                        .await
                }
                None => axum_server::from_tcp(public).handle(h1).serve(api).await,
            }
        };
        let metrics_srv = axum_server::from_tcp(metrics).handle(h2).serve(internal);
        let (a, b) = tokio::join!(public_srv, metrics_srv);
        a?;
        b?;
        Ok(())
    });
    Ok(Running {
        addr,
        metrics_addr,
        handle,
        metrics_handle,
        task,
    })
}

/// Serves until `shutdown` resolves, then drains in-flight requests for up to `shutdown_grace`.
pub async fn run_until(
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let grace = state.config.shutdown_grace;
    let store = state.store.clone();
    let clock = state.clock.clone();
    let audit = state.clone();
    let audit = &audit.audit;
    let running = start(state).await?;
    tracing::info!(addr = %running.addr, metrics_addr = %running.metrics_addr, "medai serving");
    shutdown.await;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    running.shutdown(grace);
    let result = running.wait().await;
    // Seal what was written before stopping: place every committed event in the tree and sign a
    // final checkpoint into the database and the checkpoint directory.
    match audit.checkpoint(clock.now()).await {
        Ok(Some(cp)) => tracing::info!(tree_size = cp.size, "signed the shutdown audit checkpoint"),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(target: "security", error = %e, "shutdown audit checkpoint failed")
        }
    }
    store.close().await;
    result
}
