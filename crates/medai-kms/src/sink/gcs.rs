//! Google Cloud Storage through its JSON API, with an OAuth2 bearer token from the metadata
//! server (workload identity on GKE) or a token file, like the Cloud KMS client.
//!
//! - Start-up: `GET /storage/v1/b/{bucket}` and check that the bucket locks objects: a retention
//!   policy with `isLocked: true`, or (when `retention_days` is set) object retention enabled.
//! - Write: a multipart upload (`POST /upload/storage/v1/b/{bucket}/o?uploadType=multipart`)
//!   with `ifGenerationMatch=0`, so an existing object is never replaced, and, with
//!   `retention_days`, the object's own retention `{"mode": "Locked", "retainUntilTime": …}`.
//! - Read back: `GET /storage/v1/b/{bucket}/o?prefix=…` pages, then `alt=media` downloads.

use super::{is_checkpoint, object_name, retain_until, CheckpointSink, SinkError, SinkFuture};
use crate::http::Http;
use crate::token::TokenSource;
use medai_core::config::GcsSinkConfig;
use medai_crypto::CryptoError;
use std::time::Duration;

const NAME: &str = "gcs";
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// A checkpoint sink in a Cloud Storage bucket.
#[derive(Debug)]
pub struct GcsSink {
    http: Http,
    endpoint: reqwest::Url,
    bucket: String,
    prefix: String,
    retention_days: Option<u32>,
    token: TokenSource,
}

impl GcsSink {
    /// A client of `config.bucket`; contacts nothing yet.
    pub fn new(config: &GcsSinkConfig, timeout: Duration) -> Result<Self, SinkError> {
        let sink = format!("gs://{}/{}", config.bucket, config.prefix);
        let fail = |detail: String| SinkError {
            sink: sink.clone(),
            detail,
        };
        let endpoint = config
            .endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/');
        let endpoint =
            reqwest::Url::parse(endpoint).map_err(|e| fail(format!("audit.gcs.endpoint: {e}")))?;
        if endpoint.cannot_be_a_base() {
            return Err(fail("audit.gcs.endpoint must be an http(s) URL".into()));
        }
        let token = match (&config.token_file, &config.token_url) {
            (Some(file), _) => TokenSource::File(file.clone()),
            (None, url) => TokenSource::endpoint(
                url.clone()
                    .unwrap_or_else(|| crate::gcp::METADATA_TOKEN_URL.to_owned()),
                ("Metadata-Flavor", "Google"),
            ),
        };
        Ok(Self {
            http: Http::new(NAME, timeout).map_err(|e| fail(e.to_string()))?,
            endpoint,
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            retention_days: config.retention_days,
            token,
        })
    }

    fn error(&self, e: CryptoError) -> SinkError {
        let detail = match e {
            CryptoError::Provider { detail, .. } => detail,
            other => other.to_string(),
        };
        SinkError {
            sink: self.describe(),
            detail,
        }
    }

    /// `endpoint` + the given path segments, each percent-encoded (an object name's '/'
    /// included).
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut u = self.endpoint.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    async fn authed(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, SinkError> {
        let token = self
            .token
            .token(&self.http)
            .await
            .map_err(|e| self.error(e))?;
        Ok(req.bearer_auth(token.as_str()))
    }

    /// Refuses a bucket that does not lock its objects.
    pub async fn check_lock(&self) -> Result<(), SinkError> {
        let req = self
            .http
            .client()
            .get(self.url(&["storage", "v1", "b", &self.bucket]))
            .query(&[("fields", "name,retentionPolicy,objectRetention")]);
        let v = self
            .http
            .json("reading the bucket", self.authed(req).await?)
            .await
            .map_err(|e| self.error(e))?;
        match self.retention_days {
            Some(_) => {
                if v["objectRetention"]["mode"].as_str() != Some("Enabled") {
                    return Err(SinkError {
                        sink: self.describe(),
                        detail: "audit.gcs.retention_days needs object retention enabled on the bucket (objectRetention.mode = Enabled)".into(),
                    });
                }
            }
            None => {
                let policy = &v["retentionPolicy"];
                let period = policy["retentionPeriod"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or_else(|| policy["retentionPeriod"].as_u64())
                    .unwrap_or(0);
                if policy["isLocked"].as_bool() != Some(true) || period == 0 {
                    return Err(SinkError {
                        sink: self.describe(),
                        detail: "the bucket has no locked retention policy; lock one (gcloud storage buckets update --lock-retention-period) or set audit.gcs.retention_days with object retention enabled".into(),
                    });
                }
            }
        }
        Ok(())
    }

    fn metadata(&self, name: &str) -> Result<serde_json::Value, SinkError> {
        let mut meta = serde_json::json!({
            "name": name,
            "contentType": "text/plain; charset=utf-8",
        });
        if let Some(days) = self.retention_days {
            let until = retain_until(days).map_err(|detail| SinkError {
                sink: self.describe(),
                detail,
            })?;
            let until = time::OffsetDateTime::from_unix_timestamp(until)
                .map_err(|e| SinkError {
                    sink: self.describe(),
                    detail: format!("retention time: {e}"),
                })?
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| SinkError {
                    sink: self.describe(),
                    detail: format!("formatting the retention time: {e}"),
                })?;
            meta["retention"] = serde_json::json!({ "mode": "Locked", "retainUntilTime": until });
        }
        Ok(meta)
    }
}

impl CheckpointSink for GcsSink {
    fn describe(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix)
    }

    fn put<'a>(&'a self, size: u64, note: &'a str) -> SinkFuture<'a, String> {
        Box::pin(async move {
            let name = object_name(&self.prefix, size);
            let boundary = format!("medai-checkpoint-{size:016x}-boundary");
            if note.contains(&boundary) {
                return Err(SinkError {
                    sink: self.describe(),
                    detail: "the checkpoint contains the multipart boundary".into(),
                });
            }
            let meta = self.metadata(&name)?;
            let body = format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n\
                 --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{note}\r\n--{boundary}--\r\n"
            );
            let req = self
                .http
                .client()
                .post(self.url(&["upload", "storage", "v1", "b", &self.bucket, "o"]))
                .query(&[("uploadType", "multipart"), ("ifGenerationMatch", "0")])
                .header(
                    reqwest::header::CONTENT_TYPE,
                    format!("multipart/related; boundary={boundary}"),
                )
                .body(body);
            let location = format!("gs://{}/{name}", self.bucket);
            match self.http.json("upload", self.authed(req).await?).await {
                Ok(_) => Ok(location),
                // Written before (a retry): the existing object stays as it is.
                Err(CryptoError::Provider { detail, .. }) if detail.contains("HTTP 412") => {
                    Ok(location)
                }
                Err(e) => Err(self.error(e)),
            }
        })
    }

    fn read_all(&self) -> SinkFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let mut names = Vec::new();
            let mut page_token: Option<String> = None;
            loop {
                let mut query = vec![("prefix", self.prefix.clone())];
                if let Some(t) = page_token.take() {
                    query.push(("pageToken", t));
                }
                let req = self
                    .http
                    .client()
                    .get(self.url(&["storage", "v1", "b", &self.bucket, "o"]))
                    .query(&query);
                let v = self
                    .http
                    .json("listing objects", self.authed(req).await?)
                    .await
                    .map_err(|e| self.error(e))?;
                for item in v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    let Some(name) = item["name"].as_str() else {
                        continue;
                    };
                    if is_checkpoint(&self.prefix, name) {
                        let size = item["size"]
                            .as_str()
                            .and_then(|s| s.parse::<u64>().ok())
                            .unwrap_or(0);
                        names.push((name.to_owned(), size));
                    }
                }
                match v["nextPageToken"].as_str() {
                    Some(t) if !t.is_empty() => page_token = Some(t.to_owned()),
                    _ => break,
                }
            }
            let mut out = Vec::with_capacity(names.len());
            for (name, size) in names {
                if size > super::MAX_CHECKPOINT_BYTES {
                    out.push((name, String::new()));
                    continue;
                }
                let req = self
                    .http
                    .client()
                    .get(self.url(&["storage", "v1", "b", &self.bucket, "o", &name]))
                    .query(&[("alt", "media")]);
                let body = self
                    .http
                    .bytes("downloading a checkpoint", self.authed(req).await?)
                    .await
                    .map_err(|e| self.error(e))?;
                out.push((name, String::from_utf8_lossy(&body).into_owned()));
            }
            out.sort();
            Ok(out)
        })
    }
}
