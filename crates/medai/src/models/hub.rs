//! Downloads from the Hugging Face Hub with `hf-hub` (tokio, rustls), into the Hub's own cache
//! layout (`models--ORG--NAME/{blobs,snapshots,refs}`), so a cache filled by other tools is used
//! as it is and files placed there by hand are found.
//!
//! Settings come from the environment as the Hub's own tools read it: `HF_HOME` (the cache is
//! `$HF_HOME/hub`; without it, `<data_dir>/models/hub`, so a server with a read-only home still
//! works), `HF_TOKEN` (or the `$HF_HOME/token` file), `HF_ENDPOINT` (a mirror, or a test server)
//! and `HF_HUB_OFFLINE` (or `--offline`): no network at all, only the cache.

use super::spec::{is_commit, FileSpec};
use hf_hub::api::tokio::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where and how to download.
#[derive(Clone)]
pub struct HubSettings {
    /// Base URL of the Hub, without a trailing `/`.
    pub endpoint: String,
    /// The cache directory (`…/hub`).
    pub cache_dir: PathBuf,
    /// Never touch the network.
    pub offline: bool,
    token: Option<String>,
}

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why a file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A Hub environment variable is unusable.
    #[error("{var}: {reason}")]
    Setting {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Offline and not in the cache.
    #[error("offline (HF_HUB_OFFLINE or --offline) and {spec} is not in the cache: expected {}", expected.display())]
    NotCached {
        /// What was asked for.
        spec: String,
        /// Where it would be.
        expected: PathBuf,
    },
    /// The Hub could not be reached.
    #[error("cannot reach {endpoint} ({reason})")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// A short cause.
        reason: String,
    },
    /// 401/403.
    #[error("{endpoint} refused access to {spec} (status {status}): a gated or private repository needs HF_TOKEN with access to it")]
    Denied {
        /// The endpoint.
        endpoint: String,
        /// What was asked for.
        spec: String,
        /// The status.
        status: u16,
    },
    /// 404.
    #[error("{endpoint} has no {spec} (status 404): check the repository, file and revision")]
    NotFound {
        /// The endpoint.
        endpoint: String,
        /// What was asked for.
        spec: String,
    },
    /// Any other failure of the transfer.
    #[error("downloading {spec} failed: {reason}")]
    Transfer {
        /// What was asked for.
        spec: String,
        /// The cause.
        reason: String,
    },
}

impl HubError {
    /// Whether the failure means "no network here" (the case the default model's error explains).
    pub fn is_offline(&self) -> bool {
        matches!(self, Self::NotCached { .. } | Self::Unreachable { .. })
    }
}

/// A file in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its path (a snapshot entry, usually a link to the blob).
    pub path: PathBuf,
    /// The commit the revision resolved to, when known.
    pub commit: Option<String>,
}

fn truthy(var: &'static str, v: &str) -> Result<bool, HubError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(HubError::Setting {
            var,
            reason: format!("{other:?} is not a boolean (1/0, true/false, yes/no, on/off)"),
        }),
    }
}

impl HubSettings {
    /// Reads the Hub variables from the process environment.
    pub fn from_env(data_dir: &Path, offline_flag: bool) -> Result<Self, HubError> {
        Self::from_vars(data_dir, offline_flag, |k| std::env::var(k).ok())
    }

    /// Reads the Hub variables through `var`.
    pub fn from_vars(
        data_dir: &Path,
        offline_flag: bool,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, HubError> {
        let home = var("HF_HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let cache_dir = match &home {
            Some(h) => h.join("hub"),
            None => data_dir.join("models").join("hub"),
        };
        let offline = offline_flag
            || match var("HF_HUB_OFFLINE") {
                Some(v) => truthy("HF_HUB_OFFLINE", &v)?,
                None => false,
            };
        let endpoint = match var("HF_ENDPOINT").filter(|e| !e.is_empty()) {
            Some(e) => endpoint(&e)?,
            None => DEFAULT_ENDPOINT.to_owned(),
        };
        let token = match var("HF_TOKEN").filter(|t| !t.trim().is_empty()) {
            Some(t) => Some(token("HF_TOKEN", &t)?),
            None => match &home {
                Some(h) => match std::fs::read_to_string(h.join("token")) {
                    Ok(t) if !t.trim().is_empty() => Some(token("HF_HOME/token", &t)?),
                    _ => None,
                },
                None => None,
            },
        };
        Ok(Self {
            endpoint,
            cache_dir,
            offline,
            token,
        })
    }

    /// The cache directory of a repository.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache_dir
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// Where `spec` is (or would be) in the cache: `snapshots/<commit>/<file>`; for a branch or
    /// tag the commit comes from `refs/<revision>`.
    pub fn cached_path(&self, spec: &FileSpec) -> (PathBuf, Option<String>) {
        let dir = self.repo_dir(&spec.repo);
        let commit = if is_commit(&spec.revision) {
            Some(spec.revision.clone())
        } else {
            std::fs::read_to_string(dir.join("refs").join(&spec.revision))
                .ok()
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| is_commit(c))
        };
        let snapshot = commit.clone().unwrap_or_else(|| "<commit>".to_owned());
        (
            dir.join("snapshots").join(snapshot).join(&spec.file),
            commit,
        )
    }

    /// The file from the cache, or downloaded into it. A file pinned to a commit that is in the
    /// cache is not fetched again (a commit's content cannot change; its hash is checked anyway);
    /// a branch or tag is always asked of the Hub unless offline.
    pub async fn fetch(&self, spec: &FileSpec, progress: bool) -> Result<Fetched, HubError> {
        let (cached, commit) = self.cached_path(spec);
        let have = commit.is_some() && cached.is_file();
        if self.offline {
            return if have {
                Ok(Fetched {
                    path: cached,
                    commit,
                })
            } else {
                Err(HubError::NotCached {
                    spec: spec.to_string(),
                    expected: cached,
                })
            };
        }
        if have && is_commit(&spec.revision) {
            return Ok(Fetched {
                path: cached,
                commit,
            });
        }
        let api = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(false)
            .with_user_agent("medai", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| self.map(spec, e))?;
        let repo = api.repo(Repo::with_revision(
            spec.repo.clone(),
            RepoType::Model,
            spec.revision.clone(),
        ));
        let result = if progress && std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            repo.download_with_progress(&spec.file, bar).await
        } else {
            repo.download_with_progress(&spec.file, ()).await
        };
        let path = result.map_err(|e| self.map(spec, e))?;
        let (_, commit) = self.cached_path(spec);
        Ok(Fetched { path, commit })
    }

    fn map(&self, spec: &FileSpec, e: ApiError) -> HubError {
        let spec_s = spec.to_string();
        match e {
            ApiError::RequestError(r) => match r.status().map(|s| s.as_u16()) {
                Some(status @ (401 | 403)) => HubError::Denied {
                    endpoint: self.endpoint.clone(),
                    spec: spec_s,
                    status,
                },
                Some(404) => HubError::NotFound {
                    endpoint: self.endpoint.clone(),
                    spec: spec_s,
                },
                Some(status) => HubError::Transfer {
                    spec: spec_s,
                    reason: format!("{} answered status {status}", self.endpoint),
                },
                None if r.is_connect() || r.is_timeout() || r.is_request() => {
                    HubError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        reason: if r.is_timeout() {
                            "timed out".into()
                        } else {
                            "connection failed".into()
                        },
                    }
                }
                None => HubError::Transfer {
                    spec: spec_s,
                    reason: r.to_string(),
                },
            },
            ApiError::TooManyRetries(inner) => self.map(spec, *inner),
            ApiError::MissingHeader(h) => HubError::Transfer {
                spec: spec_s,
                reason: format!(
                    "{} answered without the {h} header (is HF_ENDPOINT a Hub?)",
                    self.endpoint
                ),
            },
            other => HubError::Transfer {
                spec: spec_s,
                reason: other.to_string(),
            },
        }
    }
}

/// Removes a file that failed its hash from the cache: the snapshot entry and the blob it points
/// to, so that nothing can load it and the next pull downloads it again.
pub fn discard(path: &Path) -> std::io::Result<()> {
    let blob = std::fs::canonicalize(path).ok();
    std::fs::remove_file(path)?;
    if let Some(b) = blob.filter(|b| b != path) {
        match std::fs::remove_file(&b) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn endpoint(s: &str) -> Result<String, HubError> {
    let bad = |reason: &str| HubError::Setting {
        var: "HF_ENDPOINT",
        reason: format!("{s:?} {reason}"),
    };
    let url = reqwest::Url::parse(s).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials (use HF_TOKEN)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not contain a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn token(var: &'static str, t: &str) -> Result<String, HubError> {
    let t = t.trim();
    if t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HubError::Setting {
            var,
            reason: "a token is at most 1024 printable ASCII characters without spaces".into(),
        });
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<HubSettings, HubError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        HubSettings::from_vars(Path::new("/data"), false, |k| m.get(k).cloned())
    }

    #[test]
    fn environment_is_read_and_checked() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(s.cache_dir, Path::new("/data/models/hub"));
        assert!(!s.offline);
        assert!(s.token.is_none());

        let s = settings(&[
            ("HF_HOME", "/hf"),
            ("HF_ENDPOINT", "http://127.0.0.1:9999/"),
            ("HF_TOKEN", " hf_abc "),
            ("HF_HUB_OFFLINE", "1"),
        ])
        .unwrap();
        assert_eq!(s.cache_dir, Path::new("/hf/hub"));
        assert_eq!(s.endpoint, "http://127.0.0.1:9999");
        assert!(s.offline);
        assert_eq!(s.token.as_deref(), Some("hf_abc"));
        assert!(!format!("{s:?}").contains("hf_abc"));

        for (k, v) in [
            ("HF_ENDPOINT", "ftp://x"),
            ("HF_ENDPOINT", "https://u:p@hub"),
            ("HF_ENDPOINT", "https://hub/?a=1"),
            ("HF_ENDPOINT", "not a url"),
            ("HF_HUB_OFFLINE", "maybe"),
            ("HF_TOKEN", "a b"),
        ] {
            let e = settings(&[(k, v)]).unwrap_err().to_string();
            assert!(e.starts_with(k), "{e}");
        }
        assert!(!settings(&[("HF_HUB_OFFLINE", "off")]).unwrap().offline);
    }

    #[test]
    fn cache_layout() {
        let s = settings(&[("HF_HOME", "/hf")]).unwrap();
        let spec = FileSpec {
            repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF".into(),
            file: "q.gguf".into(),
            revision: "9217f5db79a29953eb74d5343926648285ec7e67".into(),
            sha256: None,
        };
        let (p, c) = s.cached_path(&spec);
        assert_eq!(
            p,
            Path::new("/hf/hub/models--Qwen--Qwen2.5-0.5B-Instruct-GGUF/snapshots/9217f5db79a29953eb74d5343926648285ec7e67/q.gguf")
        );
        assert_eq!(c.as_deref(), Some(spec.revision.as_str()));
        let branch = FileSpec {
            revision: "main".into(),
            ..spec
        };
        let (p, c) = s.cached_path(&branch);
        assert!(c.is_none());
        assert!(p.to_string_lossy().contains("<commit>"));
    }
}
