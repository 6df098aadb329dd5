//! The bearer token every `/v1` request must carry. Compared in constant time (over SHA-256
//! digests, so the length does not leak either); never logged or printed.

use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Shortest token accepted: 32 characters (e.g. `openssl rand -hex 16`).
pub const MIN_TOKEN_LEN: usize = 32;
/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 512;

/// The token clients present.
pub struct BearerToken {
    digest: [u8; 32],
    secret: SecretString,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// Why a token is refused at start.
#[derive(Debug, thiserror::Error)]
#[error("the model server's bearer token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} printable ASCII characters without spaces (e.g. `openssl rand -hex 32`)")]
pub struct WeakToken;

impl BearerToken {
    /// Checks and keeps a token (surrounding whitespace, such as a file's newline, is dropped).
    pub fn new(token: &str) -> Result<Self, WeakToken> {
        let t = token.trim();
        if t.len() < MIN_TOKEN_LEN
            || t.len() > MAX_TOKEN_LEN
            || !t.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(WeakToken);
        }
        Ok(Self {
            digest: Sha256::digest(t.as_bytes()).into(),
            secret: SecretString::from(t.to_owned()),
        })
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn admits(&self, header: Option<&str>) -> bool {
        let Some(h) = header else {
            return false;
        };
        let presented = match h.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => return false,
        };
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(d.ct_eq(&self.digest))
    }

    /// The token itself (for a test client).
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_strength_and_compares() {
        assert!(BearerToken::new("short").is_err());
        assert!(BearerToken::new(&"x".repeat(513)).is_err());
        assert!(BearerToken::new(&format!("{} y", "x".repeat(40))).is_err());
        let t = BearerToken::new(&format!("{}\n", "k".repeat(40))).unwrap();
        let good = format!("Bearer {}", "k".repeat(40));
        assert!(t.admits(Some(&good)));
        assert!(t.admits(Some(&format!("bearer {}", "k".repeat(40)))));
        assert!(!t.admits(None));
        assert!(!t.admits(Some(&"k".repeat(40))));
        assert!(!t.admits(Some(&format!("Basic {}", "k".repeat(40)))));
        assert!(!t.admits(Some(&format!("Bearer {}", "k".repeat(39)))));
        assert!(!format!("{t:?}").contains("kkk"));
    }
}
