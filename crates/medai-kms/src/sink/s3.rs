//! Amazon S3 with Object Lock through the official SDK (`aws-sdk-s3`, rustls with ring like
//! the KMS client). Each checkpoint is written with `PutObject` carrying its Object Lock mode
//! (COMPLIANCE or GOVERNANCE) and retain-until date, with a checksum (Object Lock requires one)
//! and `If-None-Match: *` so an existing object is never replaced. Start-up reads the bucket's
//! Object Lock configuration and refuses a bucket without it.

use super::{is_checkpoint, object_name, retain_until, CheckpointSink, SinkError, SinkFuture};
use crate::aws::StaticCredentials;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode};
use medai_core::config::{RetentionMode, S3SinkConfig};
use std::time::Duration;

/// A checkpoint sink in an S3 bucket with Object Lock enabled.
#[derive(Debug)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    mode: RetentionMode,
    days: u32,
    timeout: Duration,
}

impl S3Sink {
    /// A client of `config.bucket` with credentials from the default AWS chain (or the given
    /// static ones, for S3-compatible servers and tests). Contacts nothing yet.
    pub async fn connect(
        config: &S3SinkConfig,
        timeout: Duration,
        credentials: Option<StaticCredentials>,
    ) -> Result<Self, SinkError> {
        let sdk = crate::aws::sdk_config(
            config.region.as_deref(),
            config.endpoint.as_deref(),
            timeout,
            credentials,
        )
        .await;
        let me = |detail: &str| SinkError {
            sink: format!("s3://{}/{}", config.bucket, config.prefix),
            detail: detail.to_owned(),
        };
        if sdk.region().is_none() {
            return Err(me("no AWS region: set audit.s3.region or AWS_REGION"));
        }
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(config.force_path_style)
            .build();
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(s3),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            mode: config.retention_mode,
            days: config.retention_days,
            timeout,
        })
    }

    /// The SDK client, e.g. to create a bucket on a test server.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    fn error(&self, detail: impl Into<String>) -> SinkError {
        SinkError {
            sink: self.describe(),
            detail: detail.into(),
        }
    }

    /// Bounds a call by the timeout even if the SDK's own timeouts do not fire.
    async fn bounded<T, E, R>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, SinkError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(describe(what, e))),
            Err(_) => Err(self.error(format!("{what}: timed out"))),
        }
    }

    /// Refuses a bucket that does not have Object Lock enabled (or cannot be read).
    pub async fn check_lock(&self) -> Result<(), SinkError> {
        let out = self
            .bounded(
                "GetObjectLockConfiguration",
                self.client
                    .get_object_lock_configuration()
                    .bucket(&self.bucket)
                    .send(),
            )
            .await
            .map_err(|e| SinkError {
                detail: format!(
                    "{} (the bucket must exist and have Object Lock enabled)",
                    e.detail
                ),
                ..e
            })?;
        let enabled = out
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            == Some(&ObjectLockEnabled::Enabled);
        if !enabled {
            return Err(self.error(
                "the bucket does not have Object Lock enabled; create it with Object Lock (checkpoints must not be deletable)",
            ));
        }
        Ok(())
    }
}

fn describe<E, R>(what: &str, e: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::TimeoutError(_) => format!("{what}: timed out"),
        SdkError::DispatchFailure(d) if d.is_timeout() => format!("{what}: timed out"),
        SdkError::DispatchFailure(d) if d.is_io() => {
            format!("{what}: could not connect: {}", DisplayErrorContext(&e))
        }
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("unknown error");
            let message: String = err
                .message()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            let kind = match code {
                "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
                    "permission denied"
                }
                "NoSuchBucket" => "the bucket does not exist",
                "ObjectLockConfigurationNotFoundError" => {
                    "the bucket has no Object Lock configuration"
                }
                "PreconditionFailed" => "the object exists already",
                _ => "failed",
            };
            format!("{what}: {kind} ({code}: {message})")
        }
        _ => format!("{what}: {}", DisplayErrorContext(&e)),
    }
}

impl CheckpointSink for S3Sink {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn put<'a>(&'a self, size: u64, note: &'a str) -> SinkFuture<'a, String> {
        Box::pin(async move {
            let key = object_name(&self.prefix, size);
            let until = retain_until(self.days).map_err(|e| self.error(e))?;
            let mode = match self.mode {
                RetentionMode::Compliance => ObjectLockMode::Compliance,
                RetentionMode::Governance => ObjectLockMode::Governance,
            };
            let sent = self
                .bounded(
                    "PutObject",
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .content_type("text/plain; charset=utf-8")
                        .body(ByteStream::from(note.as_bytes().to_vec()))
                        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                        .object_lock_mode(mode)
                        .object_lock_retain_until_date(DateTime::from_secs(until))
                        .if_none_match("*")
                        .send(),
                )
                .await;
            match sent {
                Ok(_) => Ok(format!("s3://{}/{key}", self.bucket)),
                // Written before (a retry after an earlier failure elsewhere): it stays locked.
                Err(e) if e.detail.contains("PreconditionFailed") => {
                    Ok(format!("s3://{}/{key}", self.bucket))
                }
                Err(e) => Err(e),
            }
        })
    }

    fn read_all(&self) -> SinkFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let mut names = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .bounded(
                        "ListObjectsV2",
                        self.client
                            .list_objects_v2()
                            .bucket(&self.bucket)
                            .prefix(&self.prefix)
                            .set_continuation_token(token.take())
                            .send(),
                    )
                    .await?;
                for o in page.contents() {
                    if let Some(k) = o.key() {
                        if is_checkpoint(&self.prefix, k) {
                            let size = o.size().unwrap_or(0);
                            names.push((k.to_owned(), size));
                        }
                    }
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            let mut out = Vec::with_capacity(names.len());
            for (key, size) in names {
                if u64::try_from(size).unwrap_or(u64::MAX) > super::MAX_CHECKPOINT_BYTES {
                    out.push((key, String::new()));
                    continue;
                }
                let obj = self
                    .bounded(
                        "GetObject",
                        self.client
                            .get_object()
                            .bucket(&self.bucket)
                            .key(&key)
                            .send(),
                    )
                    .await?;
                let body = obj
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.error(format!("GetObject {key}: {e}")))?
                    .into_bytes();
                out.push((key, String::from_utf8_lossy(&body).into_owned()));
            }
            out.sort();
            Ok(out)
        })
    }
}
