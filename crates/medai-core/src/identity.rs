//! Authentication rules (45 CFR 164.312(d)): usernames, the password policy, argon2id hashing,
//! TOTP (RFC 6238) with replay protection, recovery codes and random bearer secrets.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Why a username or password is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The username breaks the naming rule.
    #[error("username must be 3 to 64 characters of lowercase letters, digits, '.', '_' or '-', starting with a letter")]
    BadUsername,
    /// The password is shorter than the policy allows.
    #[error("password must be at least {0} characters long")]
    PasswordTooShort(usize),
    /// The password is longer than we hash (a denial-of-service guard).
    #[error("password must be at most {0} characters long")]
    PasswordTooLong(usize),
    /// The password contains the username.
    #[error("password must not contain the username")]
    PasswordContainsUsername,
}

/// The longest password accepted; argon2 cost grows with input and a bound keeps it predictable.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks a username: lowercase, 3–64 characters, starting with a letter.
pub fn validate_username(username: &str) -> Result<(), CredentialError> {
    let ok_len = (3..=64).contains(&username.len());
    let mut chars = username.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = username
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok_len && starts_with_letter && rest_ok {
        Ok(())
    } else {
        Err(CredentialError::BadUsername)
    }
}

/// Checks a new password against the policy: a minimum length (never below 12) and not
/// containing the username in any letter case.
pub fn validate_password(
    password: &str,
    username: &str,
    min_chars: usize,
) -> Result<(), CredentialError> {
    let n = password.chars().count();
    if n < min_chars {
        return Err(CredentialError::PasswordTooShort(min_chars));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(CredentialError::PasswordTooLong(MAX_PASSWORD_CHARS));
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(CredentialError::PasswordContainsUsername);
    }
    Ok(())
}

/// Cost parameters of argon2id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Cost {
    /// Memory in KiB (OWASP: at least 19456).
    pub memory_kib: u32,
    /// Passes over memory (OWASP: at least 2).
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashing failed; only possible with invalid parameters.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes and verifies passwords with argon2id. CPU-heavy: callers on an async runtime run it on
/// a blocking thread.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the user does not exist so that
    /// "no such user" costs the same time as "wrong password".
    dummy_hash: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with the given cost.
    pub fn new(cost: Argon2Cost) -> Result<Self, HashError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| HashError(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = Self {
            argon,
            dummy_hash: String::new(),
        };
        hasher.dummy_hash = hasher.hash(&random_token(24))?;
        Ok(hasher)
    }

    /// A PHC string (`$argon2id$...`) of `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }

    /// Whether `password` matches `phc`. With `None` (unknown user) it verifies against a dummy
    /// hash and returns false, taking the same time.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let (target, real) = match phc {
            Some(p) => (p, true),
            None => (self.dummy_hash.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(target) else {
            return false;
        };
        let ok = self
            .argon
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    }
}

/// TOTP parameters fixed by policy: RFC 6238, HMAC-SHA1, 6 digits, 30-second steps, one step of
/// skew either side.
pub const TOTP_STEP_SECS: i64 = 30;
const TOTP_DIGITS: usize = 6;
const TOTP_SECRET_BYTES: usize = 20;

/// Why a TOTP code was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TotpError {
    /// Not a 6-digit code, or matching none of the accepted steps.
    #[error("invalid code")]
    Invalid,
    /// The code matches a step already used (or older): each code works once.
    #[error("code already used")]
    Replayed,
}

/// A user's TOTP shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// 160 random bits, as RFC 4226 recommends.
    pub fn generate() -> Self {
        let mut b = vec![0u8; TOTP_SECRET_BYTES];
        OsRng.fill_bytes(&mut b);
        Self(b)
    }

    /// Wraps stored bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw secret, for sealing at rest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, issuer: &str, account: &str) -> totp_rs::TOTP {
        totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            TOTP_DIGITS,
            1,
            TOTP_STEP_SECS as u64,
            self.0.clone(),
            Some(issuer.to_owned()),
            account.to_owned(),
        )
    }

    /// The secret in base32, for manual entry into an authenticator app.
    pub fn base32(&self) -> String {
        self.totp("medai", "user").get_secret_base32()
    }

    /// The `otpauth://` URI that authenticator apps scan as a QR code.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        self.totp(issuer, account).get_url()
    }

    /// The code for time step `step` (time / 30).
    pub fn code_at_step(&self, step: i64) -> String {
        let t = u64::try_from(step.max(0)).unwrap_or(0) * TOTP_STEP_SECS as u64;
        self.totp("medai", "user").generate(t)
    }

    /// Verifies `code` at time `now`, accepting the current step and one either side, and
    /// refusing any step at or before `last_used_step`. Returns the matched step, which the
    /// caller stores as the new `last_used_step`.
    pub fn verify(
        &self,
        code: &str,
        now: i64,
        last_used_step: Option<i64>,
    ) -> Result<i64, TotpError> {
        let code = code.trim();
        if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Invalid);
        }
        let current = now.div_euclid(TOTP_STEP_SECS);
        let mut matched: Option<i64> = None;
        // Check every candidate step, so timing does not reveal which one matched.
        for step in [current - 1, current, current + 1] {
            let expected = self.code_at_step(step);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && matched.is_none() {
                matched = Some(step);
            }
        }
        let step = matched.ok_or(TotpError::Invalid)?;
        if last_used_step.is_some_and(|last| step <= last) {
            return Err(TotpError::Replayed);
        }
        Ok(step)
    }
}

/// How many recovery codes a user gets at enrolment.
pub const RECOVERY_CODE_COUNT: usize = 10;
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Ten fresh single-use recovery codes (`xxxx-xxxx-xxxx-xxxx`, about 79 bits each).
pub fn generate_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let mut out = String::with_capacity(19);
            for i in 0..16 {
                if i > 0 && i % 4 == 0 {
                    out.push('-');
                }
                let idx = (OsRng.next_u32() as usize) % RECOVERY_ALPHABET.len();
                out.push(char::from(RECOVERY_ALPHABET[idx]));
            }
            out
        })
        .collect()
}

/// The stored form of a recovery code: SHA-256 of its normalised text (case, spaces and dashes
/// ignored). The codes carry ~79 random bits, so a fast hash is enough.
pub fn hash_recovery_code(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    sha256_hex(normal.as_bytes())
}

/// `bytes` random bytes from the OS, in unpadded base64url.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Lowercase hex SHA-256; the stored form of bearer secrets (session ids, API tokens, setup
/// links), which are 256-bit random values.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The prefix of service API tokens, so leaked tokens are recognisable by secret scanners.
pub const API_TOKEN_PREFIX: &str = "medai_";

/// A new API token: the prefix plus 256 random bits.
pub fn generate_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", random_token(32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(Argon2Cost {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn usernames() {
        for ok in ["alice", "dr.jones", "a-b_c9"] {
            assert_eq!(validate_username(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "Alice",
            "9lives",
            "al ice",
            "al:ice",
            &"a".repeat(65),
        ] {
            assert_eq!(
                validate_username(bad),
                Err(CredentialError::BadUsername),
                "{bad}"
            );
        }
    }

    #[test]
    fn password_policy() {
        assert_eq!(
            validate_password("short", "bob", 12),
            Err(CredentialError::PasswordTooShort(12))
        );
        assert_eq!(
            validate_password("my-name-is-ALICE!", "alice", 12),
            Err(CredentialError::PasswordContainsUsername)
        );
        assert_eq!(
            validate_password(&"x".repeat(300), "bob", 12),
            Err(CredentialError::PasswordTooLong(MAX_PASSWORD_CHARS))
        );
        assert_eq!(
            validate_password("correct horse battery", "alice", 12),
            Ok(())
        );
        // Length is counted in characters, not bytes.
        assert_eq!(
            validate_password("ééééééééééé", "bob", 12),
            Err(CredentialError::PasswordTooShort(12))
        );
    }

    #[test]
    fn default_hash_is_argon2id_and_verifies() {
        let h = PasswordHasher::new(Argon2Cost::default()).unwrap();
        let phc = h.hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify("correct horse battery", Some(&phc)));
        assert!(!h.verify("correct horse batterY", Some(&phc)));
    }

    #[test]
    fn unknown_user_never_verifies_even_with_the_dummy_password() {
        let h = cheap();
        assert!(!h.verify("anything", None));
        assert!(!h.verify("x", Some("not a phc string")));
    }

    #[test]
    fn totp_matches_rfc6238_sha1_vector() {
        // RFC 6238 appendix B: secret "12345678901234567890", T=59 -> 94287082 (8 digits);
        // the 6-digit code is the low six digits.
        let s = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        assert_eq!(s.code_at_step(59 / 30), "287082");
        assert_eq!(s.code_at_step(1_111_111_109 / 30), "081804");
    }

    #[test]
    fn totp_accepts_one_step_of_skew_and_refuses_two() {
        let s = TotpSecret::generate();
        let now = 1_700_000_000;
        let step = now / 30;
        assert_eq!(s.verify(&s.code_at_step(step), now, None), Ok(step));
        assert_eq!(s.verify(&s.code_at_step(step - 1), now, None), Ok(step - 1));
        assert_eq!(s.verify(&s.code_at_step(step + 1), now, None), Ok(step + 1));
        assert_eq!(
            s.verify(&s.code_at_step(step - 2), now, None),
            Err(TotpError::Invalid)
        );
        assert_eq!(
            s.verify(&s.code_at_step(step + 2), now, None),
            Err(TotpError::Invalid)
        );
        assert_eq!(s.verify("12345", now, None), Err(TotpError::Invalid));
        assert_eq!(s.verify("12a456", now, None), Err(TotpError::Invalid));
    }

    #[test]
    fn totp_code_works_once() {
        let s = TotpSecret::generate();
        let now = 1_700_000_000;
        let step = s.verify(&s.code_at_step(now / 30), now, None).unwrap();
        assert_eq!(
            s.verify(&s.code_at_step(now / 30), now, Some(step)),
            Err(TotpError::Replayed)
        );
        // An older step is refused too, even inside the skew window.
        assert_eq!(
            s.verify(&s.code_at_step(now / 30 - 1), now, Some(step)),
            Err(TotpError::Replayed)
        );
        assert_eq!(
            s.verify(&s.code_at_step(now / 30 + 1), now, Some(step)),
            Ok(step + 1)
        );
    }

    #[test]
    fn otpauth_uri_carries_issuer_and_secret() {
        let s = TotpSecret::generate();
        let uri = s.otpauth_uri("medai", "alice");
        assert!(uri.starts_with("otpauth://totp/medai:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={}", s.base32())));
        assert!(!format!("{s:?}").contains(&s.base32()));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalise() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
        let c = &codes[0];
        assert_eq!(c.len(), 19);
        assert_eq!(
            hash_recovery_code(c),
            hash_recovery_code(&c.replace('-', " ").to_uppercase())
        );
        assert_ne!(hash_recovery_code(c), hash_recovery_code(&codes[1]));
    }

    #[test]
    fn api_tokens_are_prefixed_and_unique() {
        let a = generate_api_token();
        assert!(a.starts_with(API_TOKEN_PREFIX));
        assert_eq!(a.len(), API_TOKEN_PREFIX.len() + 43);
        assert_ne!(a, generate_api_token());
    }

    proptest! {
        #[test]
        fn totp_verify_never_panics(code in ".{0,12}", now in 0i64..4_000_000_000, last in proptest::option::of(0i64..200_000_000)) {
            let s = TotpSecret::from_bytes(vec![7u8; 20]);
            let _ = s.verify(&code, now, last);
        }

        #[test]
        fn password_validation_never_panics(p in ".{0,300}", u in "[a-z]{0,10}") {
            let _ = validate_password(&p, &u, 12);
        }
    }
}
