//! AWS KMS through the official SDK (`aws-sdk-kms`): `Encrypt` and `Decrypt` of each data key
//! under a symmetric KMS key, with an encryption context that binds it to its purpose and
//! version. Credentials come from the standard AWS chain (environment, shared files, web
//! identity on EKS, ECS and EC2 roles); TLS is rustls with ring.

use crate::http::humanize;
use crate::{data_key, provider_error, purpose_of};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use medai_core::config::AwsKmsConfig;
use medai_crypto::envelope::{DataKey, KeyProvider, ProviderFuture};
use medai_crypto::CryptoError;
use std::collections::HashMap;
use std::time::Duration;
use zeroize::Zeroizing;

const NAME: &str = "aws-kms";

/// An AWS KMS symmetric encryption key.
#[derive(Debug)]
pub struct AwsKms {
    client: aws_sdk_kms::Client,
    key_id: String,
    timeout: Duration,
}

/// Static credentials, for KMS-compatible servers and tests; production uses the default chain.
#[derive(Clone)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key; zeroised on drop.
    pub secret_access_key: Zeroizing<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The AWS SDK configuration every medai client uses (KMS, the S3 checkpoint sink): TLS through
/// rustls with ring, every call bounded by `timeout`, the region and endpoint when given, and
/// credentials from the default AWS chain unless fixed ones are given.
pub(crate) async fn sdk_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    timeout: Duration,
    credentials: Option<StaticCredentials>,
) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(c) = credentials {
        loader = loader.credentials_provider(aws_sdk_kms::config::Credentials::new(
            c.access_key_id,
            c.secret_access_key.as_str(),
            None,
            None,
            "medai-static",
        ));
    }
    loader.load().await
}

impl AwsKms {
    /// A client of `config.key_id` with credentials from the default AWS chain. Fails when no
    /// region is known.
    pub async fn connect(config: &AwsKmsConfig, timeout: Duration) -> Result<Self, CryptoError> {
        Self::connect_with(config, timeout, None).await
    }

    /// Like [`AwsKms::connect`], with fixed credentials when `credentials` is given.
    pub async fn connect_with(
        config: &AwsKmsConfig,
        timeout: Duration,
        credentials: Option<StaticCredentials>,
    ) -> Result<Self, CryptoError> {
        let sdk = sdk_config(
            config.region.as_deref(),
            config.endpoint.as_deref(),
            timeout,
            credentials,
        )
        .await;
        if sdk.region().is_none() {
            return Err(provider_error(
                NAME,
                "no AWS region: set keys.aws.region or AWS_REGION",
            ));
        }
        Ok(Self {
            client: aws_sdk_kms::Client::new(&sdk),
            key_id: config.key_id.clone(),
            timeout,
        })
    }

    /// The same client (credentials, region, endpoint) with another KMS key.
    pub fn with_key_id(&self, key_id: &str) -> Self {
        Self {
            client: self.client.clone(),
            key_id: key_id.to_owned(),
            timeout: self.timeout,
        }
    }

    /// The SDK client, e.g. to create a key on a test server.
    pub fn client(&self) -> &aws_sdk_kms::Client {
        &self.client
    }

    fn context(version: u32) -> HashMap<String, String> {
        HashMap::from([
            ("medai:purpose".to_owned(), purpose_of(version).to_owned()),
            ("medai:key-version".to_owned(), version.to_string()),
        ])
    }

    /// Bounds a call by the timeout even if the SDK's own timeouts do not fire.
    async fn bounded<T, E, R>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, CryptoError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe(what, self.timeout, e)),
            Err(_) => Err(timed_out(what, self.timeout)),
        }
    }
}

fn timed_out(what: &str, timeout: Duration) -> CryptoError {
    provider_error(
        NAME,
        format!(
            "{what}: timed out after {} (keys.timeout)",
            humanize(timeout)
        ),
    )
}

fn describe<E, R>(what: &str, timeout: Duration, e: SdkError<E, R>) -> CryptoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::TimeoutError(_) => timed_out(what, timeout),
        SdkError::DispatchFailure(d) if d.is_timeout() => timed_out(what, timeout),
        SdkError::DispatchFailure(d) if d.is_io() => provider_error(
            NAME,
            format!("{what}: could not connect: {}", DisplayErrorContext(&e)),
        ),
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("unknown error");
            let message = err.message().unwrap_or("");
            let kind = match code {
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException" => "permission denied",
                "NotFoundException" => "key not found (check keys.aws.key_id and region)",
                "DisabledException" | "KMSInvalidStateException" => {
                    "the key is disabled or not usable"
                }
                "InvalidCiphertextException" => {
                    "the wrapped key is corrupt, or bound to another version or purpose"
                }
                "IncorrectKeyException" => "the wrapped key was made under another KMS key",
                "ThrottlingException" => "rate limited",
                _ => "failed",
            };
            let message: String = message
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            provider_error(NAME, format!("{what}: {kind} ({code}: {message})"))
        }
        _ => provider_error(NAME, format!("{what}: {}", DisplayErrorContext(&e))),
    }
}

impl KeyProvider for AwsKms {
    fn name(&self) -> &str {
        NAME
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, version: u32) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let out = self
                .bounded(
                    "Encrypt",
                    self.client
                        .encrypt()
                        .key_id(&self.key_id)
                        .plaintext(Blob::new(key.expose().to_vec()))
                        .set_encryption_context(Some(Self::context(version)))
                        .send(),
                )
                .await?;
            out.ciphertext_blob
                .map(Blob::into_inner)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| provider_error(NAME, "Encrypt: malformed response (no ciphertext)"))
        })
    }

    fn key_id(&self) -> Option<&str> {
        Some(&self.key_id)
    }

    /// A key recorded under another KMS key of this account is unwrapped with that key (the
    /// same credentials), so keys stay readable while `medai keys rewrap` moves them.
    fn unwrap_recorded<'a>(
        &'a self,
        wrapped_by: &'a str,
        key_id: Option<&'a str>,
        wrapped: &'a [u8],
        version: u32,
    ) -> ProviderFuture<'a, DataKey> {
        match key_id {
            Some(k) if wrapped_by == NAME && k != self.key_id => {
                Box::pin(async move { self.with_key_id(k).unwrap(wrapped, version).await })
            }
            _ => self.unwrap_from(wrapped_by, wrapped, version),
        }
    }

    fn unwrap<'a>(&'a self, wrapped: &'a [u8], version: u32) -> ProviderFuture<'a, DataKey> {
        Box::pin(async move {
            let mut out = self
                .bounded(
                    "Decrypt",
                    self.client
                        .decrypt()
                        .key_id(&self.key_id)
                        .ciphertext_blob(Blob::new(wrapped.to_vec()))
                        .set_encryption_context(Some(Self::context(version)))
                        .send(),
                )
                .await?;
            let plain = out
                .plaintext
                .take()
                .map(|b| Zeroizing::new(b.into_inner()))
                .ok_or_else(|| {
                    provider_error(NAME, "Decrypt: malformed response (no plaintext)")
                })?;
            data_key(NAME, plain)
        })
    }
}
