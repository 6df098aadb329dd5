//! Google Cloud KMS through its REST API: `POST {endpoint}/v1/{key}:encrypt` and `:decrypt`,
//! with the plaintext, ciphertext and additional authenticated data in base64 and an OAuth2
//! bearer token from the metadata server (on GKE, workload identity answers there for the
//! pod's Google service account) or a token file.

use crate::http::{field, Http};
use crate::token::TokenSource;
use crate::{binding, data_key, provider_error};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use medai_core::config::GcpKmsConfig;
use medai_crypto::envelope::{DataKey, KeyProvider, ProviderFuture};
use medai_crypto::CryptoError;
use std::time::Duration;
use zeroize::Zeroizing;

const NAME: &str = "gcp-kms";
/// The GCE/GKE metadata server's token endpoint for the default service account.
pub const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
const DEFAULT_ENDPOINT: &str = "https://cloudkms.googleapis.com";

/// A Cloud KMS symmetric key (purpose `ENCRYPT_DECRYPT`).
#[derive(Debug)]
pub struct GcpKms {
    http: Http,
    endpoint: String,
    key_name: String,
    key_url: String,
    token: TokenSource,
}

impl GcpKms {
    /// A client of the key `config.key_name`; nothing is contacted until the first call.
    pub fn new(config: &GcpKmsConfig, timeout: Duration) -> Result<Self, CryptoError> {
        let endpoint = config
            .endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/');
        let token = match (&config.token_file, &config.token_url) {
            (Some(file), _) => TokenSource::File(file.clone()),
            (None, url) => TokenSource::endpoint(
                url.clone().unwrap_or_else(|| METADATA_TOKEN_URL.to_owned()),
                ("Metadata-Flavor", "Google"),
            ),
        };
        if config.key_name.is_empty() {
            return Err(provider_error(NAME, "keys.gcp.key_name is empty"));
        }
        Ok(Self {
            http: Http::new(NAME, timeout)?,
            endpoint: endpoint.to_owned(),
            key_name: config.key_name.clone(),
            key_url: format!("{endpoint}/v1/{}", config.key_name),
            token,
        })
    }

    async fn call(
        &self,
        what: &str,
        verb: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, CryptoError> {
        self.call_key(&self.key_url, what, verb, body).await
    }

    async fn call_key(
        &self,
        key_url: &str,
        what: &str,
        verb: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, CryptoError> {
        let token = self.token.token(&self.http).await?;
        let req = self
            .http
            .client()
            .post(format!("{key_url}:{verb}"))
            .bearer_auth(token.as_str())
            .json(&body);
        self.http.json(what, req).await
    }
}

impl KeyProvider for GcpKms {
    fn name(&self) -> &str {
        NAME
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, version: u32) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let what = "encrypt";
            let plaintext = Zeroizing::new(STANDARD.encode(key.expose()));
            let body = serde_json::json!({
                "plaintext": plaintext.as_str(),
                "additionalAuthenticatedData": STANDARD.encode(binding(version)),
            });
            let v = self.call(what, "encrypt", body).await?;
            let ct = field(NAME, what, &v, "ciphertext")?;
            STANDARD.decode(ct).map_err(|_| {
                provider_error(
                    NAME,
                    "encrypt: malformed response (ciphertext is not base64)",
                )
            })
        })
    }

    fn key_id(&self) -> Option<&str> {
        Some(&self.key_name)
    }

    /// A key recorded under another Cloud KMS key is unwrapped with that key (same endpoint
    /// and token), so keys stay readable while `medai keys rewrap` moves them.
    fn unwrap_recorded<'a>(
        &'a self,
        wrapped_by: &'a str,
        key_id: Option<&'a str>,
        wrapped: &'a [u8],
        version: u32,
    ) -> ProviderFuture<'a, DataKey> {
        match key_id {
            Some(k) if wrapped_by == NAME && k != self.key_name => Box::pin(async move {
                self.decrypt_with(&format!("{}/v1/{k}", self.endpoint), wrapped, version)
                    .await
            }),
            _ => self.unwrap_from(wrapped_by, wrapped, version),
        }
    }

    fn unwrap<'a>(&'a self, wrapped: &'a [u8], version: u32) -> ProviderFuture<'a, DataKey> {
        Box::pin(async move { self.decrypt_with(&self.key_url, wrapped, version).await })
    }
}

impl GcpKms {
    async fn decrypt_with(
        &self,
        key_url: &str,
        wrapped: &[u8],
        version: u32,
    ) -> Result<DataKey, CryptoError> {
        {
            let what = "decrypt";
            let body = serde_json::json!({
                "ciphertext": STANDARD.encode(wrapped),
                "additionalAuthenticatedData": STANDARD.encode(binding(version)),
            });
            let mut v = self.call_key(key_url, what, "decrypt", body).await?;
            let b64 = Zeroizing::new(field(NAME, what, &v, "plaintext")?.to_owned());
            if let Some(p) = v.get_mut("plaintext") {
                *p = serde_json::Value::Null;
            }
            let raw = Zeroizing::new(STANDARD.decode(b64.as_bytes()).map_err(|_| {
                provider_error(
                    NAME,
                    "decrypt: malformed response (plaintext is not base64)",
                )
            })?);
            data_key(NAME, raw)
        }
    }
}
