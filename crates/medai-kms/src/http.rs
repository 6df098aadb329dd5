//! The HTTP client of the REST providers: timeouts, and errors that name the provider and say
//! what happened without echoing tokens or key material.

use crate::provider_error;
use medai_crypto::CryptoError;
use std::time::Duration;

/// One provider's HTTP client.
pub(crate) struct Http {
    client: reqwest::Client,
    provider: &'static str,
    timeout: Duration,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Http({})", self.provider)
    }
}

impl Http {
    pub(crate) fn new(provider: &'static str, timeout: Duration) -> Result<Self, CryptoError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| provider_error(provider, format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            provider,
            timeout,
        })
    }

    pub(crate) fn provider(&self) -> &'static str {
        self.provider
    }

    /// Sends `req` and returns the JSON body of a 2xx answer; anything else is an error that
    /// says whether access was denied, the key was not found, the call timed out, or the answer
    /// was malformed.
    pub(crate) async fn json(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, CryptoError> {
        let body = self.bytes(what, req).await?;
        serde_json::from_slice(&body).map_err(|_| {
            provider_error(
                self.provider,
                format!("{what}: malformed response (not JSON)"),
            )
        })
    }

    /// Sends `req` and returns the body of a 2xx answer; errors as [`Http::json`].
    pub(crate) async fn bytes(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, CryptoError> {
        let resp = req.send().await.map_err(|e| self.transport(what, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(what, &e))?;
        if !status.is_success() {
            let message = cloud_message(&body);
            let kind = match status.as_u16() {
                401 => "authentication failed (the bearer token was rejected)",
                403 => "permission denied",
                404 => "not found (check the key name, version and endpoint)",
                400 => "request rejected (a wrapped key that is corrupt or bound to another key, version or purpose is refused like this)",
                412 => "precondition failed (the object already exists)",
                429 => "rate limited",
                _ => "failed",
            };
            return Err(provider_error(
                self.provider,
                format!("{what}: {kind} (HTTP {}){message}", status.as_u16()),
            ));
        }
        Ok(body)
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> CryptoError {
        if e.is_timeout() {
            provider_error(
                self.provider,
                format!(
                    "{what}: timed out after {} (keys.timeout)",
                    humanize(self.timeout)
                ),
            )
        } else if e.is_connect() {
            provider_error(self.provider, format!("{what}: could not connect"))
        } else {
            // reqwest's message includes the URL, which holds no secret (tokens travel in a
            // header).
            provider_error(self.provider, format!("{what}: {e}"))
        }
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

pub(crate) fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The cloud's own error message (GCP and Azure both answer `{"error": {"message": ...}}`),
/// shortened; prefixed with ": " when present.
fn cloud_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let e = &v["error"];
    let code = e["status"].as_str().or_else(|| e["code"].as_str());
    let msg = e["message"].as_str();
    let text = match (code, msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (None, Some(m)) => m.to_owned(),
        (Some(c), None) => c.to_owned(),
        (None, None) => return String::new(),
    };
    let short: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    format!(": {short}")
}

/// A string field of a JSON answer, or a malformed-response error naming it.
pub(crate) fn field<'v>(
    provider: &str,
    what: &str,
    v: &'v serde_json::Value,
    name: &str,
) -> Result<&'v str, CryptoError> {
    v[name].as_str().ok_or_else(|| {
        provider_error(
            provider,
            format!("{what}: malformed response (no string field `{name}`)"),
        )
    })
}
