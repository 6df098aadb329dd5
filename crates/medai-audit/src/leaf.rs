//! The canonical, versioned encoding of an audit event and its Merkle leaf hash.
//!
//! Encoding v1: the ASCII tag `medai.audit.v1\n`, then `at` as 8 big-endian bytes, then each
//! field in a fixed order as a presence byte (0 absent, 1 present) followed, when present, by
//! its length as 4 big-endian bytes and its UTF-8 bytes. Length prefixes make the encoding
//! unambiguous (no two events encode alike) and independent of JSON or database formatting.
//! The leaf hash is SHA-256(0x00 || encoding), as RFC 9162 section 2.1.1 defines.

use medai_core::audit::AuditEvent;
use tlog_tiles::Hash;

/// The encoding version; a new version gets a new tag, and old leaves keep verifying under the
/// old one.
pub const ENCODING_VERSION: u8 = 1;

const TAG_V1: &[u8] = b"medai.audit.v1\n";

fn put(out: &mut Vec<u8>, field: Option<&str>) {
    match field {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            // Fields are far below 4 GiB; a longer one saturates and still cannot collide
            // with a shorter encoding because its bytes follow.
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// The fields of an event as borrowed text, in the order of the encoding: what a reader that
/// hashes rows straight from the database (without building an [`AuditEvent`]) passes.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// Unix seconds.
    pub at: i64,
    /// Who acted.
    pub actor_id: Option<&'a str>,
    /// Their role.
    pub actor_role: Option<&'a str>,
    /// What was done.
    pub action: &'a str,
    /// The user acted on.
    pub target_user_id: Option<&'a str>,
    /// The patient concerned.
    pub patient_id: Option<&'a str>,
    /// The outcome as stored (`success`, `denied`, ...).
    pub outcome: &'a str,
    /// Client address.
    pub client_addr: Option<&'a str>,
    /// Request id.
    pub request_id: Option<&'a str>,
    /// Detail (JSON text).
    pub detail: Option<&'a str>,
}

impl<'a> EventFields<'a> {
    /// The fields of `e`.
    pub fn of(e: &'a AuditEvent) -> Self {
        Self {
            at: e.at,
            actor_id: e.actor_id.as_deref(),
            actor_role: e.actor_role.as_deref(),
            action: &e.action,
            target_user_id: e.target_user_id.as_deref(),
            patient_id: e.patient_id.as_deref(),
            outcome: e.outcome.as_str(),
            client_addr: e.client_addr.as_deref(),
            request_id: e.request_id.as_deref(),
            detail: e.detail.as_deref(),
        }
    }

    /// Appends the canonical bytes (version 1) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(TAG_V1);
        out.extend_from_slice(&self.at.to_be_bytes());
        put(out, self.actor_id);
        put(out, self.actor_role);
        put(out, Some(self.action));
        put(out, self.target_user_id);
        put(out, self.patient_id);
        put(out, Some(self.outcome));
        put(out, self.client_addr);
        put(out, self.request_id);
        put(out, self.detail);
    }

    /// The leaf hash, using `buf` as scratch space (cleared first) so a reader hashing many
    /// rows allocates once.
    pub fn leaf_hash(&self, buf: &mut Vec<u8>) -> Hash {
        buf.clear();
        self.encode_into(buf);
        tlog_tiles::record_hash(buf)
    }
}

/// The canonical bytes of `e` (version 1).
pub fn canonical_encoding(e: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    EventFields::of(e).encode_into(&mut out);
    out
}

/// The RFC 9162 leaf hash of `e`: SHA-256(0x00 || canonical encoding).
pub fn leaf_hash(e: &AuditEvent) -> Hash {
    tlog_tiles::record_hash(&canonical_encoding(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use medai_core::audit::Outcome;
    use proptest::prelude::*;

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    #[test]
    fn leaf_hash_is_sha256_of_zero_byte_and_encoding() {
        let e = AuditEvent::new(1_700_000_000, "auth.login", Outcome::Success).actor("u1", "nurse");
        assert_eq!(leaf_hash(&e).0, sha256(&[&[0], &canonical_encoding(&e)]));
        // The encoding spelled out byte by byte, so a change of format cannot pass unnoticed.
        let mut v = b"medai.audit.v1\n".to_vec();
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[0, 0, 1, 0, 0, 0, 1, b'x', 0, 0, 1, 0, 0, 0, 6]);
        v.extend_from_slice(b"denied");
        v.extend_from_slice(&[0, 0, 0]);
        let e = AuditEvent::new(0, "x", Outcome::Denied);
        assert_eq!(canonical_encoding(&e), v);
        assert_eq!(leaf_hash(&e).0, sha256(&[&[0], &v]));
    }

    #[test]
    fn absent_and_empty_fields_differ() {
        let a = AuditEvent::new(1, "a", Outcome::Success);
        let mut b = a.clone();
        b.detail = Some(String::new());
        assert_ne!(leaf_hash(&a), leaf_hash(&b));
    }

    fn opt() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(".{0,12}")
    }

    proptest! {
        #[test]
        fn different_events_encode_differently(
            a in (any::<i64>(), opt(), opt(), ".{0,8}", opt()),
            b in (any::<i64>(), opt(), opt(), ".{0,8}", opt()),
        ) {
            let mk = |(at, actor, patient, action, detail): (i64, Option<String>, Option<String>, String, Option<String>)| {
                let mut e = AuditEvent::new(at, action, Outcome::Success);
                e.actor_id = actor;
                e.patient_id = patient;
                e.detail = detail;
                e
            };
            let (ea, eb) = (mk(a), mk(b));
            prop_assert_eq!(ea == eb, canonical_encoding(&ea) == canonical_encoding(&eb));
        }
    }
}
