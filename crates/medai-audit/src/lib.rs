//! medai's tamper-evident audit log, as pure logic: the canonical encoding of an event and its
//! RFC 9162 leaf hash, the Merkle tree arithmetic (through `tlog_tiles`, a port of Go's
//! `golang.org/x/mod/sumdb/tlog`), checkpoints signed with Ed25519 in the C2SP signed-note
//! format (through `signed_note`), inclusion and consistency proofs that verify offline with
//! the public key alone, the streaming verifier, and the FHIR R4 `AuditEvent` export.
//!
//! This crate never touches a database or the network; the storage crate feeds it rows. It must
//! never log event contents: events carry identifiers only, and errors name positions, not
//! values.

pub mod checkpoint;
pub mod fhir;
pub mod leaf;
pub mod proof;
pub mod tree;
pub mod verify;

pub use checkpoint::{CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
pub use leaf::{canonical_encoding, leaf_hash, ENCODING_VERSION};
pub use tlog_tiles::Hash;
pub use tree::Frontier;

/// Errors of the audit log logic. Messages name sizes and positions, never event contents.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A checkpoint or proof text could not be parsed.
    #[error("malformed {what}: {problem}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A signature did not verify, or was made by an unknown key.
    #[error("checkpoint signature: {0}")]
    Signature(String),
    /// A proof did not verify.
    #[error("proof does not verify: {0}")]
    Proof(String),
    /// A key file could not be read or written, or is unsafe.
    #[error("key file {path}: {problem}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
}
