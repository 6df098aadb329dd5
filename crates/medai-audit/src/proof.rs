//! Proof documents that verify offline with the log's public key alone: an inclusion proof of
//! one event against a signed checkpoint, and a consistency proof between two signed
//! checkpoints. They are JSON, so they can be archived, mailed and checked anywhere.

use crate::checkpoint::{CheckpointVerifier, SignedCheckpoint};
use crate::tree::{check_consistency, check_inclusion};
use crate::{leaf_hash, AuditError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use medai_core::audit::AuditEvent;
use serde::{Deserialize, Serialize};
use tlog_tiles::Hash;

/// Proof that one event is leaf `index` of the tree a signed checkpoint commits to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Always `medai-audit-inclusion-proof/v1`.
    pub format: String,
    /// The event's database sequence number (informational; the proof is about `index`).
    pub seq: i64,
    /// The event's position in the Merkle tree.
    pub index: u64,
    /// The event itself; its leaf hash is recomputed by the verifier.
    pub event: AuditEvent,
    /// The audit path, leaf end first, base64.
    pub path: Vec<String>,
    /// The signed checkpoint (C2SP signed note).
    pub checkpoint: String,
}

/// Proof that the tree of one signed checkpoint is a prefix of the tree of a later one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Always `medai-audit-consistency-proof/v1`.
    pub format: String,
    /// The older signed checkpoint.
    pub old_checkpoint: String,
    /// The newer signed checkpoint.
    pub new_checkpoint: String,
    /// The consistency proof hashes, base64.
    pub path: Vec<String>,
}

/// The format tag of inclusion proofs.
pub const INCLUSION_FORMAT: &str = "medai-audit-inclusion-proof/v1";
/// The format tag of consistency proofs.
pub const CONSISTENCY_FORMAT: &str = "medai-audit-consistency-proof/v1";

/// Encodes proof hashes as base64 strings.
pub fn encode_path(p: &[Hash]) -> Vec<String> {
    p.iter().map(|h| STANDARD.encode(h.0)).collect()
}

fn decode_path(p: &[String]) -> Result<Vec<Hash>, AuditError> {
    p.iter()
        .enumerate()
        .map(|(i, s)| {
            let raw = STANDARD.decode(s).map_err(|_| AuditError::Malformed {
                what: "proof",
                problem: format!("hash {i} is not base64"),
            })?;
            let arr: [u8; 32] = raw.try_into().map_err(|_| AuditError::Malformed {
                what: "proof",
                problem: format!("hash {i} is not 32 bytes"),
            })?;
            Ok(Hash(arr))
        })
        .collect()
}

/// What a checked proof established.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// The event is leaf `index` of the signed tree.
    Inclusion {
        /// The leaf index.
        index: u64,
        /// The checkpoint it is proved against.
        checkpoint: SignedCheckpoint,
    },
    /// The old signed tree is a prefix of the new one.
    Consistency {
        /// The older checkpoint.
        old: SignedCheckpoint,
        /// The newer checkpoint.
        new: SignedCheckpoint,
    },
}

/// Checks a proof document (either kind, told apart by its `format`) with the public key.
pub fn verify_document(text: &str, key: &CheckpointVerifier) -> Result<Verified, AuditError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| AuditError::Malformed {
            what: "proof document",
            problem: e.to_string(),
        })?;
    let malformed = |e: serde_json::Error| AuditError::Malformed {
        what: "proof document",
        problem: e.to_string(),
    };
    match value.get("format").and_then(|f| f.as_str()) {
        Some(INCLUSION_FORMAT) => {
            let p: InclusionProof = serde_json::from_value(value).map_err(malformed)?;
            let cp = key.verify(&p.checkpoint)?;
            check_inclusion(
                &decode_path(&p.path)?,
                p.index,
                cp.size,
                cp.root,
                leaf_hash(&p.event),
            )?;
            Ok(Verified::Inclusion {
                index: p.index,
                checkpoint: cp,
            })
        }
        Some(CONSISTENCY_FORMAT) => {
            let p: ConsistencyProof = serde_json::from_value(value).map_err(malformed)?;
            let old = key.verify(&p.old_checkpoint)?;
            let new = key.verify(&p.new_checkpoint)?;
            check_consistency(
                &decode_path(&p.path)?,
                old.size,
                old.root,
                new.size,
                new.root,
            )?;
            Ok(Verified::Consistency { old, new })
        }
        _ => Err(AuditError::Malformed {
            what: "proof document",
            problem: format!("`format` must be {INCLUSION_FORMAT} or {CONSISTENCY_FORMAT}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use crate::tree::{consistency_proof, inclusion_proof, Frontier, StoredHashes};
    use medai_core::audit::Outcome;
    use std::collections::HashMap;

    fn log(n: i64) -> (Vec<AuditEvent>, StoredHashes, Vec<Hash>) {
        let mut f = Frontier::new();
        let mut map = HashMap::new();
        let mut roots = vec![f.root()];
        let events: Vec<AuditEvent> = (0..n)
            .map(|i| AuditEvent::new(i, "patient.read", Outcome::Success).patient(format!("p{i}")))
            .collect();
        for (i, e) in events.iter().enumerate() {
            let start = tlog_tiles::stored_hash_index(0, i as u64);
            for (k, h) in f.push(leaf_hash(e)).into_iter().enumerate() {
                map.insert(start + k as u64, h);
            }
            roots.push(f.root());
        }
        (events, StoredHashes(map), roots)
    }

    #[test]
    fn inclusion_and_consistency_documents_verify_offline_and_forgeries_do_not() {
        let signer = CheckpointSigner::generate("medai/audit").unwrap();
        let key = CheckpointVerifier::new(signer.verifier_key()).unwrap();
        let (events, stored, roots) = log(13);
        let cp13 = signer.sign(13, roots[13]).unwrap();
        let doc = InclusionProof {
            format: INCLUSION_FORMAT.into(),
            seq: 5,
            index: 4,
            event: events[4].clone(),
            path: encode_path(&inclusion_proof(4, 13, &stored).unwrap()),
            checkpoint: cp13.note.clone(),
        };
        let text = serde_json::to_string_pretty(&doc).unwrap();
        assert!(matches!(
            verify_document(&text, &key).unwrap(),
            Verified::Inclusion { index: 4, .. }
        ));

        // An edited event, another index, a flipped path hash, a forged checkpoint.
        let mut edited = doc.clone();
        edited.event.outcome = Outcome::Denied;
        assert!(verify_document(&serde_json::to_string(&edited).unwrap(), &key).is_err());
        let mut moved = doc.clone();
        moved.index = 5;
        assert!(verify_document(&serde_json::to_string(&moved).unwrap(), &key).is_err());
        let mut flipped = doc.clone();
        flipped.path[0] = STANDARD.encode([7u8; 32]);
        assert!(verify_document(&serde_json::to_string(&flipped).unwrap(), &key).is_err());
        let mut forged = doc.clone();
        forged.checkpoint = cp13.note.replacen("\n13\n", "\n14\n", 1);
        assert!(matches!(
            verify_document(&serde_json::to_string(&forged).unwrap(), &key),
            Err(AuditError::Signature(_))
        ));
        // A proof made by someone else's key for a rewritten log.
        let evil = CheckpointSigner::generate("medai/audit").unwrap();
        let mut rewritten = doc.clone();
        rewritten.checkpoint = evil.sign(13, roots[13]).unwrap().note;
        assert!(verify_document(&serde_json::to_string(&rewritten).unwrap(), &key).is_err());
        // Malformed documents.
        for junk in [
            "",
            "{}",
            "[]",
            r#"{"format":"medai-audit-inclusion-proof/v1"}"#,
        ] {
            assert!(matches!(
                verify_document(junk, &key),
                Err(AuditError::Malformed { .. })
            ));
        }
        let mut short = doc.clone();
        short.path[0] = STANDARD.encode([1u8; 31]);
        assert!(matches!(
            verify_document(&serde_json::to_string(&short).unwrap(), &key),
            Err(AuditError::Malformed { .. })
        ));

        let cp6 = signer.sign(6, roots[6]).unwrap();
        let c = ConsistencyProof {
            format: CONSISTENCY_FORMAT.into(),
            old_checkpoint: cp6.note.clone(),
            new_checkpoint: cp13.note.clone(),
            path: encode_path(&consistency_proof(6, 13, &stored).unwrap()),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(matches!(
            verify_document(&text, &key).unwrap(),
            Verified::Consistency { .. }
        ));
        // A rewritten history: a checkpoint of size 6 over different events does not extend.
        let other_root = log(7).2[6];
        let mut fork = c.clone();
        fork.old_checkpoint = signer
            .sign(6, Hash(other_root.0.map(|b| b ^ 1)))
            .unwrap()
            .note;
        assert!(verify_document(&serde_json::to_string(&fork).unwrap(), &key).is_err());
        let mut swapped = c.clone();
        std::mem::swap(&mut swapped.old_checkpoint, &mut swapped.new_checkpoint);
        assert!(verify_document(&serde_json::to_string(&swapped).unwrap(), &key).is_err());
    }
}
