//! Key providers backed by cloud key management services, behind medai's
//! `KeyProvider` trait: **AWS KMS** (the official SDK),
//! **Google Cloud KMS** and **Azure Key Vault** (their documented REST APIs with OAuth2 bearer
//! tokens).
//!
//! Every call has a timeout; a provider that does not answer, refuses, cannot find the key or
//! returns something malformed gives a [`CryptoError::Provider`] naming it. Each wrapped data
//! key is bound to its purpose and version (AWS encryption context, GCP additional
//! authenticated data, and inside the RSA-OAEP plaintext for Azure), so a wrapped key moved to
//! another version does not unwrap. Unwrapped keys and bearer tokens are zeroised on drop and
//! never printed.
//!
//! The [`sink`] module writes signed audit checkpoints to object storage with a retention lock
//! (S3 Object Lock, Cloud Storage retention), reusing the same SDK, HTTP and token code.
//!
//! [`ConfiguredProvider`] is what the server and CLI use: the provider chosen by `[keys]`, with
//! the local key file kept for keys it wrapped before a move to a KMS (`medai keys rewrap`).

pub mod aws;
pub mod azure;
pub mod gcp;
mod http;
pub mod sink;
mod token;

use medai_core::config::{KeyProviderKind, KeysConfig};
use medai_crypto::envelope::{DataKey, KeyProvider, ProviderFuture};
use medai_crypto::{CryptoError, MasterKey};

/// The name of the local key file provider in `phi_keys.provider`.
pub const LOCAL_FILE: &str = "local-file";

/// What a wrapped key is: the first blind-index key is wrapped as version 0, later ones as
/// 2^31 + their version (`medai_store::phi_keys`), data keys from 1.
pub(crate) fn purpose_of(version: u32) -> &'static str {
    if version == 0 || version >= 1 << 31 {
        "blind-index"
    } else {
        "data"
    }
}

/// The bytes that bind a wrapped key to its purpose and version (AAD or wrapped prefix).
pub(crate) fn binding(version: u32) -> Vec<u8> {
    format!(
        "medai.phi-key.v1;purpose={};version={version};",
        purpose_of(version)
    )
    .into_bytes()
}

pub(crate) fn provider_error(provider: &str, detail: impl Into<String>) -> CryptoError {
    CryptoError::Provider {
        provider: provider.to_owned(),
        detail: detail.into(),
    }
}

/// Turns unwrapped bytes into a data key, refusing any length but 32; the input is zeroised.
pub(crate) fn data_key(
    provider: &str,
    bytes: zeroize::Zeroizing<Vec<u8>>,
) -> Result<DataKey, CryptoError> {
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        provider_error(
            provider,
            format!(
                "unwrapped key has {} bytes, expected 32 (malformed response)",
                bytes.len()
            ),
        )
    })?;
    let key = DataKey::from_bytes(arr);
    let mut arr = arr;
    zeroize::Zeroize::zeroize(&mut arr);
    Ok(key)
}

/// The PHI key provider chosen by configuration, plus the local key file for keys it wrapped
/// (so an installation keeps working between switching `keys.provider` and `medai keys
/// rewrap`). New keys are always wrapped by the configured provider.
pub struct ConfiguredProvider {
    primary: Box<dyn KeyProvider>,
    local: Option<MasterKey>,
}

impl std::fmt::Debug for ConfiguredProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredProvider")
            .field("provider", &self.primary.name())
            .field("local_file_fallback", &self.local.is_some())
            .finish()
    }
}

impl ConfiguredProvider {
    /// Builds the provider `config` selects. `local` is the local key file's key: the provider
    /// itself for `local-file`, otherwise kept to unwrap keys it wrapped earlier.
    pub async fn from_config(config: &KeysConfig, local: MasterKey) -> Result<Self, CryptoError> {
        let timeout = config.effective_timeout();
        let missing = |section: &str| {
            provider_error(
                config.provider.name(),
                format!("[keys.{section}] is not configured"),
            )
        };
        let primary: Box<dyn KeyProvider> = match config.provider {
            KeyProviderKind::LocalFile => {
                return Ok(Self {
                    primary: Box::new(local),
                    local: None,
                })
            }
            KeyProviderKind::AwsKms => Box::new(
                aws::AwsKms::connect(config.aws.as_ref().ok_or_else(|| missing("aws"))?, timeout)
                    .await?,
            ),
            KeyProviderKind::GcpKms => Box::new(gcp::GcpKms::new(
                config.gcp.as_ref().ok_or_else(|| missing("gcp"))?,
                timeout,
            )?),
            KeyProviderKind::AzureKeyVault => Box::new(azure::AzureKeyVault::new(
                config.azure.as_ref().ok_or_else(|| missing("azure"))?,
                timeout,
            )?),
        };
        Ok(Self {
            primary,
            local: Some(local),
        })
    }

    /// A provider over `primary`, with `local` for keys the local file wrapped.
    pub fn new(primary: Box<dyn KeyProvider>, local: Option<MasterKey>) -> Self {
        Self { primary, local }
    }
}

impl KeyProvider for ConfiguredProvider {
    fn name(&self) -> &str {
        self.primary.name()
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, version: u32) -> ProviderFuture<'a, Vec<u8>> {
        self.primary.wrap(key, version)
    }

    fn unwrap<'a>(&'a self, wrapped: &'a [u8], version: u32) -> ProviderFuture<'a, DataKey> {
        self.primary.unwrap(wrapped, version)
    }

    fn key_id(&self) -> Option<&str> {
        self.primary.key_id()
    }

    fn unwrap_from<'a>(
        &'a self,
        wrapped_by: &'a str,
        wrapped: &'a [u8],
        version: u32,
    ) -> ProviderFuture<'a, DataKey> {
        self.unwrap_recorded(wrapped_by, None, wrapped, version)
    }

    fn unwrap_recorded<'a>(
        &'a self,
        wrapped_by: &'a str,
        key_id: Option<&'a str>,
        wrapped: &'a [u8],
        version: u32,
    ) -> ProviderFuture<'a, DataKey> {
        match &self.local {
            Some(local) if wrapped_by == LOCAL_FILE && self.primary.name() != LOCAL_FILE => {
                local.unwrap(wrapped, version)
            }
            _ => self
                .primary
                .unwrap_recorded(wrapped_by, key_id, wrapped, version),
        }
    }
}
