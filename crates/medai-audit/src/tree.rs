//! Merkle tree arithmetic (RFC 9162 section 2.1) over leaf hashes.
//!
//! The tree's nodes are stored in the layout of Go's `sumdb/tlog` (through `tlog_tiles`): record
//! `n` and the complete subtrees it closes are written at consecutive *stored hash indexes*
//! starting at `stored_hash_index(0, n)`, so the log only ever inserts. Proofs are built by
//! asking for the stored hashes they need: the indexes depend only on the sizes involved, so a
//! caller first collects the indexes ([`inclusion_proof_indexes`]), fetches them from storage,
//! then builds the proof from the fetched map.

use std::cell::RefCell;
use std::collections::HashMap;
pub use tlog_tiles::stored_hash_index;
use tlog_tiles::{node_hash, Hash, HashReader, EMPTY_HASH};

/// The right edge of a tree: the roots of its complete subtrees, largest first. Enough to append
/// leaves and compute the root, in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored hash indexes of the complete subtrees of a tree of `size` leaves, largest
    /// first, with their levels: what [`Frontier::from_stored`] needs.
    pub fn stored_indexes(size: u64) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                out.push((level, stored_hash_index(level, start >> level)));
                start += width;
            }
        }
        out
    }

    /// Rebuilds the frontier of a tree of `size` leaves from the hashes at
    /// [`Frontier::stored_indexes`], in that order.
    pub fn from_stored(size: u64, hashes: &[Hash]) -> Option<Self> {
        let levels = Self::stored_indexes(size);
        if levels.len() != hashes.len() {
            return None;
        }
        Some(Self {
            size,
            nodes: levels
                .iter()
                .zip(hashes)
                .map(|((l, _), h)| (*l, *h))
                .collect(),
        })
    }

    /// Appends a leaf; returns the hashes to store at consecutive indexes from
    /// `stored_hash_index(0, n)`, where `n` is the leaf's index: the leaf hash, then the root of
    /// every subtree it completes.
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut stored = Vec::with_capacity(2);
        self.push_into(leaf, &mut stored);
        stored
    }

    /// [`Frontier::push`] writing the hashes to store into `stored` (cleared first).
    pub fn push_into(&mut self, leaf: Hash, stored: &mut Vec<Hash>) {
        stored.clear();
        stored.push(leaf);
        let mut cur = (0u8, leaf);
        while let Some(&(level, left)) = self.nodes.last() {
            if level != cur.0 {
                break;
            }
            self.nodes.pop();
            cur = (level + 1, node_hash(left, cur.1));
            stored.push(cur.1);
        }
        self.nodes.push(cur);
        self.size += 1;
    }

    /// Appends a leaf without returning the stored hashes (the verifier's fast path).
    pub fn push_leaf(&mut self, leaf: Hash) {
        let mut cur = (0u8, leaf);
        while let Some(&(level, left)) = self.nodes.last() {
            if level != cur.0 {
                break;
            }
            self.nodes.pop();
            cur = (level + 1, node_hash(left, cur.1));
        }
        self.nodes.push(cur);
        self.size += 1;
    }

    /// The root hash (RFC 9162 MTH); the hash of the empty string for an empty tree.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return EMPTY_HASH;
        };
        for &(_, left) in it {
            h = node_hash(left, h);
        }
        h
    }
}

/// A [`HashReader`] that records what is asked and answers zeros: proofs ask for the same
/// indexes whatever the hashes are.
#[derive(Default)]
struct Recorder(RefCell<Vec<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash([0; 32]); indexes.len()])
    }
}

/// Stored hashes fetched from storage, by stored hash index.
pub struct StoredHashes(pub HashMap<u64, Hash>);

impl HashReader for StoredHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn recorded(f: impl FnOnce(&Recorder) -> Result<(), tlog_tiles::Error>) -> Vec<u64> {
    let r = Recorder::default();
    // The recorder never fails; a size error surfaces again when the proof is built.
    let _ = f(&r);
    let mut v = r.0.into_inner();
    v.sort_unstable();
    v.dedup();
    v
}

/// Stored hash indexes needed to prove leaf `index` in the tree of `size` leaves, and that
/// tree's root.
pub fn inclusion_proof_indexes(index: u64, size: u64) -> Vec<u64> {
    recorded(|r| {
        tlog_tiles::prove_record(size, index, r)?;
        tlog_tiles::tree_hash(size, r).map(|_| ())
    })
}

/// Stored hash indexes needed to prove the tree of `old` leaves is a prefix of the tree of
/// `new` leaves, and both roots.
pub fn consistency_proof_indexes(old: u64, new: u64) -> Vec<u64> {
    recorded(|r| {
        tlog_tiles::prove_tree(new, old, r)?;
        tlog_tiles::tree_hash(new, r)?;
        tlog_tiles::tree_hash(old, r).map(|_| ())
    })
}

/// The audit path of leaf `index` in the tree of `size` leaves, leaf end first.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    hashes: &StoredHashes,
) -> Result<Vec<Hash>, crate::AuditError> {
    tlog_tiles::prove_record(size, index, hashes)
        .map_err(|e| crate::AuditError::Proof(e.to_string()))
}

/// The consistency proof from the tree of `old` leaves to the tree of `new` leaves.
pub fn consistency_proof(
    old: u64,
    new: u64,
    hashes: &StoredHashes,
) -> Result<Vec<Hash>, crate::AuditError> {
    tlog_tiles::prove_tree(new, old, hashes).map_err(|e| crate::AuditError::Proof(e.to_string()))
}

/// The root of the tree of `size` leaves, from stored hashes.
pub fn stored_root(size: u64, hashes: &StoredHashes) -> Result<Hash, crate::AuditError> {
    tlog_tiles::tree_hash(size, hashes).map_err(|e| crate::AuditError::Proof(e.to_string()))
}

/// Checks that `proof` shows leaf `leaf` at `index` in the tree of `size` leaves with `root`.
pub fn check_inclusion(
    proof: &[Hash],
    index: u64,
    size: u64,
    root: Hash,
    leaf: Hash,
) -> Result<(), crate::AuditError> {
    // Guard the sizes before handing them over: the library asserts its own preconditions.
    if index >= size || proof.len() > 64 {
        return Err(crate::AuditError::Proof(format!(
            "leaf index {index} is not inside a tree of {size} leaves, or the proof is too long"
        )));
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf)
        .map_err(|e| crate::AuditError::Proof(e.to_string()))
}

/// Checks that `proof` shows the tree of `old` leaves with `old_root` is a prefix of the tree of
/// `new` leaves with `new_root`.
pub fn check_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> Result<(), crate::AuditError> {
    if old == 0 {
        // Every tree extends the empty tree; the proof is empty.
        return if proof.is_empty() && old_root == EMPTY_HASH {
            Ok(())
        } else {
            Err(crate::AuditError::Proof(
                "bad proof from the empty tree".into(),
            ))
        };
    }
    if old > new || proof.len() > 128 {
        return Err(crate::AuditError::Proof(format!(
            "old size {old} is larger than new size {new}, or the proof is too long"
        )));
    }
    tlog_tiles::check_tree(&proof.to_vec(), new, new_root, old, old_root)
        .map_err(|e| crate::AuditError::Proof(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| tlog_tiles::record_hash(&i.to_be_bytes()))
            .collect()
    }

    /// A tree built with the frontier, with every stored hash kept.
    fn build(n: u64) -> (Frontier, StoredHashes, Vec<Hash>) {
        let mut f = Frontier::new();
        let mut map = HashMap::new();
        let mut roots = vec![EMPTY_HASH];
        for (i, leaf) in leaves(n).into_iter().enumerate() {
            let start = stored_hash_index(0, i as u64);
            for (k, h) in f.push(leaf).into_iter().enumerate() {
                map.insert(start + k as u64, h);
            }
            roots.push(f.root());
        }
        (f, StoredHashes(map), roots)
    }

    /// RFC 9162 MTH, written straight from the definition.
    fn mth(l: &[Hash]) -> Hash {
        match l.len() {
            0 => EMPTY_HASH,
            1 => l[0],
            n => {
                let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
                node_hash(mth(&l[..k]), mth(&l[k..]))
            }
        }
    }

    #[test]
    fn frontier_root_matches_the_rfc_definition_and_stored_layout() {
        let all = leaves(70);
        let (_, stored, roots) = build(70);
        for n in 0..=70u64 {
            assert_eq!(roots[n as usize], mth(&all[..n as usize]), "size {n}");
            assert_eq!(stored_root(n, &stored).unwrap(), roots[n as usize]);
            let idx = Frontier::stored_indexes(n);
            let hs: Vec<Hash> = idx.iter().map(|(_, i)| stored.0[i]).collect();
            assert_eq!(
                Frontier::from_stored(n, &hs).unwrap().root(),
                roots[n as usize]
            );
        }
        // The stored hashes are the ones the tlog reference computes.
        let mut map = HashMap::new();
        for (i, leaf) in all.iter().enumerate() {
            let hs = tlog_tiles::stored_hashes_for_record_hash(
                i as u64,
                *leaf,
                &StoredHashes(map.clone()),
            )
            .unwrap();
            let start = stored_hash_index(0, i as u64);
            for (k, h) in hs.into_iter().enumerate() {
                map.insert(start + k as u64, h);
            }
        }
        assert_eq!(map, stored.0);
    }

    #[test]
    fn honest_proofs_verify_and_need_only_the_indexes_listed() {
        let (_, stored, roots) = build(37);
        for size in 1..=37u64 {
            for i in 0..size {
                let need = inclusion_proof_indexes(i, size);
                let sub = StoredHashes(need.iter().map(|k| (*k, stored.0[k])).collect());
                let p = inclusion_proof(i, size, &sub).unwrap();
                let leaf = stored.0[&stored_hash_index(0, i)];
                check_inclusion(&p, i, size, roots[size as usize], leaf).unwrap();
                assert_eq!(stored_root(size, &sub).unwrap(), roots[size as usize]);
            }
            for old in 1..=size {
                let need = consistency_proof_indexes(old, size);
                let sub = StoredHashes(need.iter().map(|k| (*k, stored.0[k])).collect());
                let p = consistency_proof(old, size, &sub).unwrap();
                check_consistency(&p, old, roots[old as usize], size, roots[size as usize])
                    .unwrap();
            }
        }
    }

    #[test]
    fn forged_and_malformed_proofs_are_refused() {
        let (_, stored, roots) = build(21);
        let size = 21;
        let leaf5 = stored.0[&stored_hash_index(0, 5)];
        let p = inclusion_proof(5, size, &stored).unwrap();
        let root = roots[size as usize];
        // Wrong leaf, wrong index, wrong size, wrong root.
        let other = stored.0[&stored_hash_index(0, 6)];
        assert!(check_inclusion(&p, 5, size, root, other).is_err());
        assert!(check_inclusion(&p, 4, size, root, leaf5).is_err());
        assert!(check_inclusion(&p, 5, size - 1, roots[20], leaf5).is_err());
        assert!(check_inclusion(&p, 5, size, roots[20], leaf5).is_err());
        // Each hash flipped, truncated, extended, reordered.
        for k in 0..p.len() {
            let mut q = p.clone();
            q[k].0[0] ^= 1;
            assert!(check_inclusion(&q, 5, size, root, leaf5).is_err());
        }
        assert!(check_inclusion(&p[..p.len() - 1], 5, size, root, leaf5).is_err());
        let mut longer = p.clone();
        longer.push(leaf5);
        assert!(check_inclusion(&longer, 5, size, root, leaf5).is_err());
        let mut rev = p.clone();
        rev.reverse();
        assert!(check_inclusion(&rev, 5, size, root, leaf5).is_err());
        // Out-of-range inputs are errors, not panics.
        assert!(check_inclusion(&p, 21, size, root, leaf5).is_err());
        assert!(check_inclusion(&p, u64::MAX, 0, root, leaf5).is_err());
        // Consistency: a proof for other sizes, a flipped hash, a rewritten old root.
        let c = consistency_proof(7, size, &stored).unwrap();
        assert!(check_consistency(&c, 7, roots[7], size, root).is_ok());
        assert!(check_consistency(&c, 8, roots[8], size, root).is_err());
        assert!(check_consistency(&c, 7, roots[6], size, root).is_err());
        for k in 0..c.len() {
            let mut q = c.clone();
            q[k].0[31] ^= 0x80;
            assert!(check_consistency(&q, 7, roots[7], size, root).is_err());
        }
        assert!(check_consistency(&c, 22, roots[7], size, root).is_err());
        assert!(check_consistency(&[], 0, EMPTY_HASH, size, root).is_ok());
        assert!(check_consistency(&c, 0, EMPTY_HASH, size, root).is_err());
    }

    proptest! {
        #[test]
        fn random_proofs_never_panic_and_never_verify(
            hashes in proptest::collection::vec(any::<[u8; 32]>(), 0..40),
            index in any::<u64>(), size in any::<u64>(), old in any::<u64>(),
        ) {
            let p: Vec<Hash> = hashes.into_iter().map(Hash).collect();
            let root = tlog_tiles::record_hash(b"root");
            let leaf = tlog_tiles::record_hash(b"leaf");
            prop_assert!(check_inclusion(&p, index, size, root, leaf).is_err());
            prop_assert!(check_consistency(&p, old, leaf, size, root).is_err());
        }
    }
}
