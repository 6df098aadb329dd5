//! `medai healthcheck`: asks the running server at the configured listen address whether it is
//! alive (`/healthz`) or ready (`/readyz`), so a container image needs neither a shell nor curl.
//!
//! Over TLS the server's certificate is verified: it must chain to the configured certificate
//! file (or a public root) and name the host of `public_url` (`localhost` when that is not a DNS
//! name). The check never follows redirects and never sends credentials.

use anyhow::{bail, Context as _};
use medai_core::config::Config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The longest piece of an unhealthy response body repeated in the error.
const BODY_EXCERPT: usize = 300;

/// What to probe and how long to wait.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// `/readyz` (database, schema, session store) instead of `/healthz` (process up).
    pub ready: bool,
    /// Connect plus response deadline.
    pub timeout: Duration,
}

/// Where the probe connects: the listen address, with an unspecified address (0.0.0.0, ::)
/// replaced by the loopback address of the same family.
pub fn target_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    SocketAddr::new(ip, listen.port())
}

/// The name the TLS certificate must carry: the DNS host of `public_url`, else `localhost`.
fn tls_server_name(cfg: &Config) -> String {
    cfg.public_url
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| u.domain().map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Probes the server; `Ok` carries a one-line summary, `Err` says what is wrong and where.
pub async fn run(cfg: &Config, probe: Probe) -> anyhow::Result<String> {
    let addr = target_addr(cfg.listen);
    let path = if probe.ready { "/readyz" } else { "/healthz" };
    let mut builder = reqwest::Client::builder()
        .timeout(probe.timeout)
        .connect_timeout(probe.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    let url = match &cfg.tls {
        None => format!("http://{addr}{path}"),
        Some(tls) => {
            let name = tls_server_name(cfg);
            let pem = std::fs::read(&tls.cert_path).with_context(|| {
                format!(
                    "cannot read the TLS certificate {} (config key tls.cert_path)",
                    tls.cert_path.display()
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "{} is not a PEM certificate chain (config key tls.cert_path)",
                    tls.cert_path.display()
                )
            })?;
            if certs.is_empty() {
                bail!(
                    "{} holds no certificate (config key tls.cert_path)",
                    tls.cert_path.display()
                );
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
            builder = builder
                .use_rustls_tls()
                .min_tls_version(reqwest::tls::Version::TLS_1_2)
                .resolve(&name, addr);
            format!("https://{name}:{}{path}", addr.port())
        }
    };
    let client = builder
        .build()
        .context("cannot build the HTTP client for the health check")?;
    let response = client.get(&url).send().await.map_err(|e| {
        let cause = if e.is_timeout() {
            format!("no answer within {:?}", probe.timeout)
        } else if e.is_connect() {
            format!("cannot connect ({})", root_cause(&e))
        } else {
            root_cause(&e)
        };
        anyhow::anyhow!("unhealthy: {url} (listening address {addr}): {cause}")
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(format!("healthy: {url} answered {status}"));
    }
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
    bail!("unhealthy: {url} answered {status}: {}", excerpt.trim())
}

/// The innermost error's text: reqwest's own message is only "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        let t = |s: &str| target_addr(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(t("[::]:8443"), "[::1]:8443");
        assert_eq!(t("10.1.2.3:8080"), "10.1.2.3:8080");
    }

    #[test]
    fn tls_name_comes_from_the_public_url_host() {
        let mut cfg = Config {
            public_url: Some("https://medai.example.org/".to_owned()),
            ..Config::default()
        };
        assert_eq!(tls_server_name(&cfg), "medai.example.org");
        cfg.public_url = Some("https://10.0.0.5:8443".to_owned());
        assert_eq!(tls_server_name(&cfg), "localhost");
        cfg.public_url = None;
        assert_eq!(tls_server_name(&cfg), "localhost");
    }
}
