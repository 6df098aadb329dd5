//! The verifier: recomputes every leaf from the stored event, rebuilds the tree, and compares it
//! with every known checkpoint (from the database and from the external checkpoint sink).
//!
//! It reports the first break precisely: an event whose content no longer matches the leaf hash
//! recorded when it was appended (edited), a missing position (deleted), a tree root that differs
//! from a signed checkpoint (reordered or rewritten, with the range of positions that the
//! checkpoint covers beyond the last one that matched), a log shorter than a checkpoint
//! (truncated), and checkpoints whose signature fails (forged).

use crate::checkpoint::CheckpointVerifier;
use crate::leaf_hash;
use crate::tree::Frontier;
use medai_core::audit::AuditEvent;
use std::collections::BTreeMap;
use tlog_tiles::Hash;

/// One problem found, in the order the verifier met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The event's content does not hash to the leaf stored when it was appended.
    LeafMismatch {
        /// Tree position.
        index: u64,
        /// Database sequence number.
        seq: i64,
    },
    /// A tree position has no event.
    Missing {
        /// The first missing position.
        index: u64,
        /// The next position that does have an event (or the stored tree size).
        next_present: u64,
    },
    /// The tree rebuilt from the events does not have the root a checkpoint signed.
    RootMismatch {
        /// The checkpoint's tree size.
        size: u64,
        /// Where the checkpoint came from (`database` or a file name).
        source: String,
        /// The largest tree size that still matched a checkpoint: the change is among the
        /// positions from here up to `size`.
        last_good_size: u64,
    },
    /// The log holds fewer events than a checkpoint signed.
    Truncated {
        /// The checkpoint's tree size.
        checkpoint_size: u64,
        /// Where the checkpoint came from.
        source: String,
        /// Events in the log now.
        log_size: u64,
    },
    /// A checkpoint's signature or format is bad.
    BadCheckpoint {
        /// Where the checkpoint came from.
        source: String,
        /// What is wrong.
        problem: String,
    },
    /// The stored interior hashes (used to build proofs) disagree with the events.
    StoredTreeMismatch {
        /// The tree size checked.
        size: u64,
    },
    /// An event is stored but was never placed in the tree.
    NotInTree {
        /// Database sequence number.
        seq: i64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::LeafMismatch { index, seq } => write!(
                f,
                "event seq {seq} (tree index {index}) was modified: its content does not match the leaf hash recorded when it was appended"
            ),
            Finding::Missing { index, next_present } => write!(
                f,
                "tree index {index} has no event (deleted); the next present index is {next_present}"
            ),
            Finding::RootMismatch { size, source, last_good_size } => write!(
                f,
                "tree of {size} events differs from the signed checkpoint ({source}): events at tree indexes {last_good_size}..{size} were changed, reordered or replaced"
            ),
            Finding::Truncated { checkpoint_size, source, log_size } => write!(
                f,
                "log truncated: {log_size} events, but a signed checkpoint ({source}) covers {checkpoint_size}"
            ),
            Finding::BadCheckpoint { source, problem } => {
                write!(f, "checkpoint {source} is invalid: {problem}")
            }
            Finding::StoredTreeMismatch { size } => write!(
                f,
                "the stored Merkle tree of {size} events differs from the one rebuilt from the events"
            ),
            Finding::NotInTree { seq } => {
                write!(f, "event seq {seq} is stored but not in the Merkle tree")
            }
        }
    }
}

/// A checkpoint to compare with, already parsed.
#[derive(Debug, Clone)]
pub struct KnownCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// `database` or the file it came from.
    pub source: String,
}

/// Parses and checks signed notes against the log's public keys (the current one and any
/// retired after a rotation); a note that none of them verifies becomes a finding, the others
/// checkpoints.
pub fn check_notes(
    keys: &[CheckpointVerifier],
    notes: impl IntoIterator<Item = (String, String)>,
) -> (Vec<KnownCheckpoint>, Vec<Finding>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (source, note) in notes {
        let mut last_err = String::from("no public key given");
        let mut verified = None;
        for key in keys {
            match key.verify(&note) {
                Ok(cp) => {
                    verified = Some(cp);
                    break;
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        match verified {
            Some(cp) => good.push(KnownCheckpoint {
                size: cp.size,
                root: cp.root,
                source,
            }),
            None => bad.push(Finding::BadCheckpoint {
                source,
                problem: last_err,
            }),
        }
    }
    (good, bad)
}

/// Feeds events in tree order; compares roots as the tree grows past each checkpoint.
pub struct Verifier {
    frontier: Frontier,
    checkpoints: BTreeMap<u64, Vec<KnownCheckpoint>>,
    findings: Vec<Finding>,
    last_good_size: u64,
    events: u64,
}

impl Verifier {
    /// Starts from an empty tree.
    pub fn new(checkpoints: Vec<KnownCheckpoint>) -> Self {
        Self::resume(Frontier::new(), checkpoints)
    }

    /// Starts from a tree whose first leaves are taken as they are stored (`verify --from`).
    pub fn resume(frontier: Frontier, checkpoints: Vec<KnownCheckpoint>) -> Self {
        let start = frontier.size();
        let mut map: BTreeMap<u64, Vec<KnownCheckpoint>> = BTreeMap::new();
        for c in checkpoints.into_iter().filter(|c| c.size > start) {
            map.entry(c.size).or_default().push(c);
        }
        Self {
            frontier,
            checkpoints: map,
            findings: Vec::new(),
            last_good_size: start,
            events: 0,
        }
    }

    /// The next tree index expected.
    pub fn next_index(&self) -> u64 {
        self.frontier.size()
    }

    /// Feeds the event stored at tree position `index` with the leaf hash recorded at append.
    /// Positions must come in increasing order; a gap is reported as missing events and
    /// verification cannot continue past it (the tree shape is lost), so this returns `false`.
    pub fn push(&mut self, index: u64, seq: i64, event: &AuditEvent, stored_leaf: &Hash) -> bool {
        self.push_hashed(index, seq, leaf_hash(event), stored_leaf, &mut Vec::new())
    }

    /// [`Verifier::push`] for a leaf hash the caller recomputed from the stored event (see
    /// [`crate::leaf::EventFields`]); `stored` receives the hashes the tree stores for this
    /// leaf (the leaf, then every subtree it completes), so a caller can compare the stored tree.
    pub fn push_hashed(
        &mut self,
        index: u64,
        seq: i64,
        leaf: Hash,
        stored_leaf: &Hash,
        stored: &mut Vec<Hash>,
    ) -> bool {
        if index != self.frontier.size() {
            self.findings.push(Finding::Missing {
                index: self.frontier.size(),
                next_present: index,
            });
            return false;
        }
        if &leaf != stored_leaf {
            self.findings.push(Finding::LeafMismatch { index, seq });
        }
        self.frontier.push_into(leaf, stored);
        self.events += 1;
        self.compare_checkpoints();
        true
    }

    /// Feeds a leaf taken from the stored tree because its event is gone (already reported).
    pub fn push_stored_leaf(&mut self, leaf: Hash) {
        self.push_stored_leaf_into(leaf, &mut Vec::new());
    }

    /// [`Verifier::push_stored_leaf`], writing the hashes the tree stores for it to `stored`.
    pub fn push_stored_leaf_into(&mut self, leaf: Hash, stored: &mut Vec<Hash>) {
        self.frontier.push_into(leaf, stored);
        self.compare_checkpoints();
    }

    fn compare_checkpoints(&mut self) {
        let size = self.frontier.size();
        if let Some(cps) = self.checkpoints.remove(&size) {
            let root = self.frontier.root();
            let mut all_good = true;
            for c in cps {
                if c.root != root {
                    all_good = false;
                    self.findings.push(Finding::RootMismatch {
                        size,
                        source: c.source,
                        last_good_size: self.last_good_size,
                    });
                }
            }
            if all_good {
                self.last_good_size = size;
            }
        }
    }

    /// Adds a finding met outside the event stream (stored tree, unplaced events).
    pub fn report(&mut self, f: Finding) {
        self.findings.push(f);
    }

    /// The root of the events fed so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Ends the run: checkpoints beyond the last event mean truncation.
    pub fn finish(mut self) -> Report {
        let log_size = self.frontier.size();
        for (size, cps) in std::mem::take(&mut self.checkpoints) {
            for c in cps {
                self.findings.push(Finding::Truncated {
                    checkpoint_size: size,
                    source: c.source,
                    log_size,
                });
            }
        }
        Report {
            events_checked: self.events,
            tree_size: log_size,
            root: self.frontier.root(),
            findings: self.findings,
        }
    }
}

/// The outcome of a verification run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Events whose leaves were recomputed.
    pub events_checked: u64,
    /// The tree size reached.
    pub tree_size: u64,
    /// The rebuilt root.
    pub root: Hash,
    /// Every problem found, the first break first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use medai_core::audit::Outcome;

    fn events(n: i64) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| {
                AuditEvent::new(i, "auth.login", Outcome::Success).actor(format!("u{i}"), "nurse")
            })
            .collect()
    }

    fn root_of(ev: &[AuditEvent]) -> Hash {
        let mut f = Frontier::new();
        for e in ev {
            f.push_leaf(leaf_hash(e));
        }
        f.root()
    }

    fn run(stored: &[(u64, AuditEvent, Hash)], cps: Vec<KnownCheckpoint>) -> Report {
        let mut v = Verifier::new(cps);
        for (i, e, h) in stored {
            if !v.push(*i, *i as i64 + 1, e, h) {
                break;
            }
        }
        v.finish()
    }

    fn honest(ev: &[AuditEvent]) -> Vec<(u64, AuditEvent, Hash)> {
        ev.iter()
            .enumerate()
            .map(|(i, e)| (i as u64, e.clone(), leaf_hash(e)))
            .collect()
    }

    #[test]
    fn each_kind_of_tampering_is_found() {
        let ev = events(20);
        let cp = |n: usize| KnownCheckpoint {
            size: n as u64,
            root: root_of(&ev[..n]),
            source: format!("cp{n}"),
        };
        assert!(run(&honest(&ev), vec![cp(8), cp(20)]).ok());

        // Edited in place (hash left as recorded).
        let mut s = honest(&ev);
        s[5].1.outcome = Outcome::Denied;
        let r = run(&s, vec![cp(8), cp(20)]);
        assert_eq!(r.findings[0], Finding::LeafMismatch { index: 5, seq: 6 });

        // Edited with the leaf hash rewritten too: only the checkpoint catches it.
        let mut s = honest(&ev);
        s[12].1.action = "other".into();
        s[12].2 = leaf_hash(&s[12].1);
        let r = run(&s, vec![cp(8), cp(20)]);
        assert_eq!(
            r.findings,
            vec![Finding::RootMismatch {
                size: 20,
                source: "cp20".into(),
                last_good_size: 8
            }]
        );

        // Reordered (two rows swapped with their hashes).
        let mut s = honest(&ev);
        let (a, b) = (s[3].clone(), s[4].clone());
        s[3] = (3, b.1, b.2);
        s[4] = (4, a.1, a.2);
        let r = run(&s, vec![cp(8)]);
        assert!(matches!(
            r.findings[0],
            Finding::RootMismatch {
                size: 8,
                last_good_size: 0,
                ..
            }
        ));

        // Deleted.
        let mut s = honest(&ev);
        s.remove(7);
        let r = run(&s, vec![cp(20)]);
        assert_eq!(
            r.findings[0],
            Finding::Missing {
                index: 7,
                next_present: 8
            }
        );

        // Truncated.
        let s = honest(&ev[..15]);
        let r = run(&s, vec![cp(8), cp(20)]);
        assert_eq!(
            r.findings,
            vec![Finding::Truncated {
                checkpoint_size: 20,
                source: "cp20".into(),
                log_size: 15
            }]
        );

        // Rewritten whole log: all new events, new hashes; any old checkpoint catches it.
        let other: Vec<AuditEvent> = events(20)
            .into_iter()
            .map(|mut e| {
                e.at += 1;
                e
            })
            .collect();
        let r = run(&honest(&other), vec![cp(8)]);
        assert!(matches!(
            r.findings[0],
            Finding::RootMismatch { size: 8, .. }
        ));
    }

    #[test]
    fn bad_checkpoint_signatures_are_findings() {
        let s = CheckpointSigner::generate("medai/audit").unwrap();
        let key = CheckpointVerifier::new(s.verifier_key()).unwrap();
        let good = s.sign(3, root_of(&events(3))).unwrap().note;
        let forged = good.replacen("\n3\n", "\n4\n", 1);
        let (ok, bad) = check_notes(
            std::slice::from_ref(&key),
            [("a".into(), good.clone()), ("b".into(), forged)],
        );
        assert_eq!(ok.len(), 1);
        assert!(matches!(&bad[0], Finding::BadCheckpoint { source, .. } if source == "b"));
        assert!(run(&honest(&events(3)), ok).ok());
        // After a rotation: checkpoints of the retired key verify when its public key is given.
        let new = CheckpointSigner::generate("medai/audit").unwrap();
        let new_key = CheckpointVerifier::new(new.verifier_key()).unwrap();
        let later = new.sign(3, root_of(&events(3))).unwrap().note;
        let (ok, bad) = check_notes(
            std::slice::from_ref(&new_key),
            [("old".into(), good.clone()), ("new".into(), later.clone())],
        );
        assert_eq!((ok.len(), bad.len()), (1, 1));
        let (ok, bad) = check_notes(
            &[new_key, key],
            [("old".into(), good), ("new".into(), later)],
        );
        assert_eq!((ok.len(), bad.len()), (2, 0));
    }
}
