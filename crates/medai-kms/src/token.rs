//! OAuth2 bearer tokens for the REST providers: a token file (re-read each call) or a metadata
//! endpoint (GCP metadata server, Azure IMDS), cached until shortly before it expires.

use crate::http::{field, Http};
use crate::provider_error;
use medai_crypto::CryptoError;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Where tokens come from.
pub(crate) enum TokenSource {
    /// A file holding the token.
    File(PathBuf),
    /// A metadata endpoint answering `{"access_token": ..., "expires_in": ...}`.
    Endpoint {
        url: String,
        header: (&'static str, &'static str),
        cache: tokio::sync::Mutex<Option<(Zeroizing<String>, Instant)>>,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "TokenSource::File({})", p.display()),
            Self::Endpoint { url, .. } => write!(f, "TokenSource::Endpoint({url})"),
        }
    }
}

impl TokenSource {
    pub(crate) fn endpoint(url: String, header: (&'static str, &'static str)) -> Self {
        Self::Endpoint {
            url,
            header,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A current access token.
    pub(crate) async fn token(&self, http: &Http) -> Result<Zeroizing<String>, CryptoError> {
        match self {
            Self::File(path) => {
                let raw = Zeroizing::new(tokio::fs::read_to_string(path).await.map_err(|e| {
                    provider_error(
                        http.provider(),
                        format!("token file {}: {e}", path.display()),
                    )
                })?);
                let token = raw.trim();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(provider_error(
                        http.provider(),
                        format!("token file {} must hold one access token", path.display()),
                    ));
                }
                Ok(Zeroizing::new(token.to_owned()))
            }
            Self::Endpoint { url, header, cache } => {
                let mut cached = cache.lock().await;
                if let Some((t, until)) = cached.as_ref() {
                    if Instant::now() < *until {
                        return Ok(t.clone());
                    }
                }
                let what = "fetching an access token";
                let v = http
                    .json(what, http.client().get(url).header(header.0, header.1))
                    .await?;
                let token =
                    Zeroizing::new(field(http.provider(), what, &v, "access_token")?.to_owned());
                // GCP sends a number, Azure IMDS a string.
                let expires_in = v["expires_in"]
                    .as_u64()
                    .or_else(|| v["expires_in"].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(60);
                let lifetime = Duration::from_secs(expires_in.saturating_sub(60));
                *cached = Some((token.clone(), Instant::now() + lifetime));
                Ok(token)
            }
        }
    }
}
