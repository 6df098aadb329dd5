//! Azure Key Vault through its REST API: `POST {vault}/keys/{name}/{version}/wrapkey` and
//! `/unwrapkey` (api-version 7.4) with RSA-OAEP-256 and a bearer token from the managed
//! identity endpoint (IMDS) or a token file.
//!
//! RSA-OAEP in Key Vault takes no associated data, so the purpose and version binding travels
//! inside the wrapped plaintext and is checked after unwrapping. The key version that wrapped
//! a key is stored in front of its ciphertext, so unwrapping keeps working after the vault key
//! is rotated.

use crate::http::{field, Http};
use crate::token::TokenSource;
use crate::{binding, data_key, provider_error};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use medai_core::config::AzureKeyVaultConfig;
use medai_crypto::envelope::{DataKey, KeyProvider, ProviderFuture};
use medai_crypto::CryptoError;
use std::time::Duration;
use zeroize::Zeroizing;

const NAME: &str = "azure-key-vault";
const API_VERSION: &str = "7.4";
const ALG: &str = "RSA-OAEP-256";
/// The format byte in front of a wrapped key.
const FORMAT: u8 = 1;
/// Azure's instance metadata service token endpoint (managed identity).
pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// A Key Vault RSA key.
#[derive(Debug)]
pub struct AzureKeyVault {
    http: Http,
    key_url: String,
    version: Option<String>,
    token: TokenSource,
}

impl AzureKeyVault {
    /// A client of the key `config.key_name` in `config.vault_url`; nothing is contacted until
    /// the first call.
    pub fn new(config: &AzureKeyVaultConfig, timeout: Duration) -> Result<Self, CryptoError> {
        let token = match (&config.token_file, &config.token_url) {
            (Some(file), _) => TokenSource::File(file.clone()),
            (None, url) => {
                let base = url.clone().unwrap_or_else(|| IMDS_TOKEN_URL.to_owned());
                let sep = if base.contains('?') { '&' } else { '?' };
                let mut u = format!("{base}{sep}api-version=2018-02-01&resource={VAULT_RESOURCE}");
                if let Some(id) = &config.client_id {
                    u.push_str("&client_id=");
                    u.push_str(id);
                }
                TokenSource::endpoint(u, ("Metadata", "true"))
            }
        };
        if config.key_name.is_empty() || config.vault_url.is_empty() {
            return Err(provider_error(
                NAME,
                "keys.azure.vault_url and keys.azure.key_name are required",
            ));
        }
        Ok(Self {
            http: Http::new(NAME, timeout)?,
            key_url: format!(
                "{}/keys/{}",
                config.vault_url.trim_end_matches('/'),
                config.key_name
            ),
            version: config.key_version.clone(),
            token,
        })
    }

    async fn call(
        &self,
        what: &str,
        version: Option<&str>,
        op: &str,
        value: &str,
    ) -> Result<serde_json::Value, CryptoError> {
        let token = self.token.token(&self.http).await?;
        let url = match version {
            Some(v) => format!("{}/{v}/{op}?api-version={API_VERSION}", self.key_url),
            None => format!("{}/{op}?api-version={API_VERSION}", self.key_url),
        };
        let req = self
            .http
            .client()
            .post(url)
            .bearer_auth(token.as_str())
            .json(&serde_json::json!({ "alg": ALG, "value": value }));
        self.http.json(what, req).await
    }
}

/// The version segment of a key id `https://vault/keys/name/version`.
fn version_of(kid: &str) -> Option<&str> {
    let v = kid.rsplit('/').next()?;
    (!v.is_empty() && v.len() <= 255 && v.chars().all(|c| c.is_ascii_alphanumeric())).then_some(v)
}

impl KeyProvider for AzureKeyVault {
    fn name(&self) -> &str {
        NAME
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, version: u32) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let what = "wrapkey";
            let mut plain = Zeroizing::new(binding(version));
            plain.extend_from_slice(key.expose());
            let value = Zeroizing::new(URL_SAFE_NO_PAD.encode(plain.as_slice()));
            let v = self
                .call(what, self.version.as_deref(), "wrapkey", &value)
                .await?;
            let kid = field(NAME, what, &v, "kid")?;
            let key_version = version_of(kid).ok_or_else(|| {
                provider_error(NAME, "wrapkey: malformed response (kid has no key version)")
            })?;
            let ct = URL_SAFE_NO_PAD
                .decode(field(NAME, what, &v, "value")?.trim_end_matches('='))
                .map_err(|_| {
                    provider_error(NAME, "wrapkey: malformed response (value is not base64url)")
                })?;
            let mut out = Vec::with_capacity(2 + key_version.len() + ct.len());
            out.push(FORMAT);
            out.push(u8::try_from(key_version.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(key_version.as_bytes());
            out.extend_from_slice(&ct);
            Ok(out)
        })
    }

    fn unwrap<'a>(&'a self, wrapped: &'a [u8], version: u32) -> ProviderFuture<'a, DataKey> {
        Box::pin(async move {
            let what = "unwrapkey";
            let malformed = || provider_error(NAME, "the stored wrapped key is malformed");
            let (&format, rest) = wrapped.split_first().ok_or_else(malformed)?;
            let (&len, rest) = rest.split_first().ok_or_else(malformed)?;
            if format != FORMAT || rest.len() <= usize::from(len) {
                return Err(malformed());
            }
            let (kv, ct) = rest.split_at(usize::from(len));
            let kv = std::str::from_utf8(kv)
                .ok()
                .filter(|v| version_of(v) == Some(*v))
                .ok_or_else(malformed)?;
            let v = self
                .call(what, Some(kv), "unwrapkey", &URL_SAFE_NO_PAD.encode(ct))
                .await?;
            let plain = Zeroizing::new(
                URL_SAFE_NO_PAD
                    .decode(field(NAME, what, &v, "value")?.trim_end_matches('='))
                    .map_err(|_| {
                        provider_error(
                            NAME,
                            "unwrapkey: malformed response (value is not base64url)",
                        )
                    })?,
            );
            let expect = binding(version);
            let Some(raw) = plain.strip_prefix(expect.as_slice()) else {
                return Err(provider_error(
                    NAME,
                    format!(
                        "unwrapkey: the key is bound to another purpose or version than {} version {version}",
                        crate::purpose_of(version)
                    ),
                ));
            };
            data_key(NAME, Zeroizing::new(raw.to_vec()))
        })
    }
}
