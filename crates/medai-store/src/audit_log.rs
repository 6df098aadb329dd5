//! The Merkle log over the audit events: the integrator that places committed events in the
//! tree, signed checkpoints, the reads that proofs and the verifier need, and the
//! group-committing [`Appender`] for events that have no transaction of their own.
//!
//! The integrator is the log's single sequencer: it runs under an advisory lock on PostgreSQL
//! (one connection on SQLite), takes queued events in commit order, and inserts their tree
//! positions and nodes in one transaction. Nothing here updates or deletes a log row; the
//! migrations make the database refuse it.

use crate::audit::{parse_outcome, StoredEvent};
use crate::audit_scan::{self, Bounds, EventLeaf, Order, Scan, ScanError, TreeNode, HELD_MAX};
use crate::{DatabaseKind, Store, StoreError};
use medai_audit::tree::{Frontier, StoredHashes};
use medai_audit::verify::{check_notes, Finding, Report, Verifier};
use medai_audit::{CheckpointSigner, CheckpointVerifier, Hash, SignedCheckpoint};
use medai_core::audit::AuditEvent;
use sqlx::{AnyConnection, Row as _};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot, Notify};

/// Arbitrary constant naming the integrator's PostgreSQL advisory lock.
const INTEGRATOR_LOCK: i64 = 0x6d65_6461_6961_7564;

fn hash_of(raw: &[u8], what: &str) -> Result<Hash, StoreError> {
    let arr: [u8; 32] = raw
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not a 32-byte hash")))?;
    Ok(Hash(arr))
}

fn int_list(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt("tree index out of range".into()))
}

/// Number of events in the tree.
pub async fn tree_size(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM audit_log_entries")
        .fetch_one(conn)
        .await?
        .try_get("n")?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt("negative tree size".into()))
}

/// The stored tree hashes at `indexes` (stored hash indexes); missing ones are absent.
pub async fn stored_hashes(
    conn: &mut AnyConnection,
    indexes: &[u64],
) -> Result<StoredHashes, StoreError> {
    let mut map = HashMap::with_capacity(indexes.len());
    for chunk in indexes.chunks(1000) {
        if chunk.is_empty() {
            continue;
        }
        let rows = sqlx::query(&format!(
            "SELECT id, hash FROM audit_tree_hashes WHERE id IN ({})",
            int_list(chunk)
        ))
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let h: Vec<u8> = r.try_get("hash")?;
            map.insert(id as u64, hash_of(&h, "stored tree hash")?);
        }
    }
    Ok(StoredHashes(map))
}

/// The frontier of the stored tree of `size` leaves.
pub async fn stored_frontier(conn: &mut AnyConnection, size: u64) -> Result<Frontier, StoreError> {
    let need = Frontier::stored_indexes(size);
    let ids: Vec<u64> = need.iter().map(|(_, i)| *i).collect();
    let got = stored_hashes(conn, &ids).await?;
    let hashes = ids
        .iter()
        .map(|i| got.0.get(i).copied())
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| {
            StoreError::Corrupt(format!("stored Merkle tree of {size} leaves is incomplete"))
        })?;
    Frontier::from_stored(size, &hashes)
        .ok_or_else(|| StoreError::Corrupt("stored Merkle tree frontier is malformed".into()))
}

/// Places up to `max` queued events in the tree, in commit order; returns how many.
pub async fn integrate(store: &Store, max: i64) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    if store.kind() == DatabaseKind::Postgres {
        sqlx::query(&format!("SELECT pg_advisory_xact_lock({INTEGRATOR_LOCK})"))
            .execute(&mut *tx)
            .await?;
    }
    let rows = sqlx::query(
        "SELECT e.seq, e.at, e.actor_id, e.actor_role, e.action, e.target_user_id, e.patient_id, \
         e.outcome, e.client_addr, e.request_id, e.detail, e.leaf_hash \
         FROM audit_pending p JOIN audit_events e ON e.seq = p.seq ORDER BY p.seq LIMIT $1",
    )
    .bind(max)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let size = tree_size(&mut tx).await?;
    let mut frontier = stored_frontier(&mut tx, size).await?;
    let mut entries: Vec<(i64, i64, i64)> = Vec::with_capacity(rows.len());
    let mut nodes: Vec<(i64, Vec<u8>)> = Vec::with_capacity(rows.len() * 2);
    for r in &rows {
        let seq: i64 = r.try_get("seq")?;
        let recorded: Option<Vec<u8>> = r.try_get("leaf_hash")?;
        // The leaf is the hash the writer recorded with the event; an event changed since then
        // is placed as written and the verifier reports it at this position.
        let leaf = match recorded {
            Some(h) => hash_of(&h, "leaf hash")?,
            None => medai_audit::leaf_hash(&event_of(r, seq)?),
        };
        let idx = frontier.size();
        let start = tlog_tiles_index(idx);
        for (k, h) in frontier.push(leaf).into_iter().enumerate() {
            nodes.push((to_i64(start + k as u64)?, h.0.to_vec()));
        }
        entries.push((to_i64(idx)?, seq, to_i64(start)?));
    }
    for chunk in entries.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(i, s, l)| format!("({i},{s},{l})"))
            .collect();
        sqlx::query(&format!(
            "INSERT INTO audit_log_entries (idx, seq, leaf_id) VALUES {}",
            values.join(",")
        ))
        .execute(&mut *tx)
        .await?;
    }
    for chunk in nodes.chunks(500) {
        let mut sql = String::from("INSERT INTO audit_tree_hashes (id, hash) VALUES ");
        for (k, (id, _)) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({id},${})", k + 1));
        }
        let mut q = sqlx::query(&sql);
        for (_, h) in chunk {
            q = q.bind(h.clone());
        }
        q.execute(&mut *tx).await?;
    }
    let seqs: Vec<u64> = entries.iter().map(|(_, s, _)| *s as u64).collect();
    for chunk in seqs.chunks(1000) {
        sqlx::query(&format!(
            "DELETE FROM audit_pending WHERE seq IN ({})",
            int_list(chunk)
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(entries.len() as u64)
}

fn tlog_tiles_index(n: u64) -> u64 {
    medai_audit::tree::stored_hash_index(0, n)
}

fn event_of(r: &sqlx::any::AnyRow, seq: i64) -> Result<AuditEvent, StoreError> {
    let outcome: String = r.try_get("outcome")?;
    Ok(AuditEvent {
        at: r.try_get("at")?,
        actor_id: r.try_get("actor_id")?,
        actor_role: r.try_get("actor_role")?,
        action: r.try_get("action")?,
        target_user_id: r.try_get("target_user_id")?,
        patient_id: r.try_get("patient_id")?,
        outcome: parse_outcome(&outcome).ok_or_else(|| {
            StoreError::Corrupt(format!("audit event {seq} has an unknown outcome"))
        })?,
        client_addr: r.try_get("client_addr")?,
        request_id: r.try_get("request_id")?,
        detail: r.try_get("detail")?,
    })
}

/// Events one integration pass takes.
const INTEGRATE_BATCH: i64 = 5000;

/// Integrates until nothing is queued; returns how many events were placed. A pass that took
/// less than a full batch emptied the queue as it stood, so no empty pass follows it: on
/// SQLite every pass holds the one connection that requests wait for.
pub async fn integrate_all(store: &Store) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = integrate(store, INTEGRATE_BATCH).await?;
        total += n;
        if n < INTEGRATE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Events committed but not yet in the tree.
pub async fn pending_count(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_pending")
        .fetch_one(conn)
        .await?
        .try_get("n")?;
    Ok(n.max(0) as u64)
}

/// Signs and stores a checkpoint of the current tree, unless one of this size exists; returns
/// the new checkpoint (for the external sink), or `None` when the tree has not grown.
pub async fn checkpoint(
    store: &Store,
    signer: &CheckpointSigner,
    now: i64,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let mut tx = store.begin().await?;
    let size = tree_size(&mut tx).await?;
    let exists: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_checkpoints WHERE tree_size = $1")
            .bind(to_i64(size)?)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
    if exists > 0 {
        tx.commit().await?;
        return Ok(None);
    }
    let root = stored_frontier(&mut tx, size).await?.root();
    let cp = signer
        .sign(size, root)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, root, note, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind(to_i64(size)?)
    .bind(root.0.to_vec())
    .bind(cp.note.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(cp))
}

/// A stored checkpoint.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub tree_size: u64,
    /// The signed note.
    pub note: String,
    /// When it was signed (Unix seconds).
    pub created_at: i64,
}

/// Every stored checkpoint, smallest first.
pub async fn checkpoints(conn: &mut AnyConnection) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let rows =
        sqlx::query("SELECT tree_size, note, created_at FROM audit_checkpoints ORDER BY tree_size")
            .fetch_all(conn)
            .await?;
    rows.iter().map(checkpoint_from_row).collect()
}

/// The checkpoint of exactly `size` leaves, or the smallest one at or above `size`.
pub async fn checkpoint_at_least(
    conn: &mut AnyConnection,
    size: u64,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let r = sqlx::query(
        "SELECT tree_size, note, created_at FROM audit_checkpoints WHERE tree_size >= $1 \
         ORDER BY tree_size LIMIT 1",
    )
    .bind(to_i64(size)?)
    .fetch_optional(conn)
    .await?;
    r.as_ref().map(checkpoint_from_row).transpose()
}

/// A row of `SELECT tree_size, note, created_at FROM audit_checkpoints`.
fn checkpoint_from_row(r: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tree_size: r.try_get::<i64, _>("tree_size")?.max(0) as u64,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
    })
}

/// The newest checkpoint.
pub async fn latest_checkpoint(
    conn: &mut AnyConnection,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let r = sqlx::query(
        "SELECT tree_size, note, created_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    r.as_ref().map(checkpoint_from_row).transpose()
}

/// The tree position of the event with sequence number `seq`, and the event.
pub async fn entry_for_seq(
    conn: &mut AnyConnection,
    seq: i64,
) -> Result<Option<(u64, StoredEvent)>, StoreError> {
    let r = sqlx::query(
        "SELECT l.idx, e.seq, e.at, e.actor_id, e.actor_role, e.action, e.target_user_id, \
         e.patient_id, e.outcome, e.client_addr, e.request_id, e.detail \
         FROM audit_log_entries l JOIN audit_events e ON e.seq = l.seq WHERE l.seq = $1",
    )
    .bind(seq)
    .fetch_optional(conn)
    .await?;
    match r {
        None => Ok(None),
        Some(r) => {
            let idx: i64 = r.try_get("idx")?;
            Ok(Some((
                idx.max(0) as u64,
                StoredEvent {
                    seq,
                    event: event_of(&r, seq)?,
                },
            )))
        }
    }
}

/// Hashes for a proof: the stored hashes at `indexes`.
pub async fn proof_hashes(
    conn: &mut AnyConnection,
    indexes: &[u64],
) -> Result<StoredHashes, StoreError> {
    stored_hashes(conn, indexes).await
}

/// Where a verification run starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyFrom {
    /// Start at the event with this sequence number, trusting the stored tree before it.
    pub seq: Option<i64>,
}

/// Recomputes every leaf from the stored events, rebuilds the tree and compares it with every
/// stored checkpoint and with `extra` signed notes (e.g. from the checkpoint directory), each
/// with the name it came from. Checkpoints are checked against `keys` (the current public key,
/// plus retired ones after a rotation). Reads the log in three ordered scans (see `audit_scan`);
/// memory holds only events met before the position that needs them.
pub async fn verify(
    store: &Store,
    keys: &[CheckpointVerifier],
    from: VerifyFrom,
    extra: Vec<(String, String)>,
) -> Result<Report, StoreError> {
    // PostgreSQL, whole log: first in heap order, the fast way when the tables are as written
    // (see `audit_scan`). From a sequence number on, the index finds the start. SQLite reads in
    // key order either way.
    let orders: &[Order] = match store.kind() {
        DatabaseKind::Postgres if from.seq.is_none() => &[Order::Heap, Order::Key],
        _ => &[Order::Key],
    };
    for &order in orders {
        match verify_pass(store, keys, from, extra.clone(), order).await {
            Ok(report) => return Ok(report),
            // The tables are not in key order on disk: read them in order.
            Err(ScanError::Unordered) if order == Order::Heap => {}
            Err(ScanError::Unordered) => {
                return Err(StoreError::Corrupt(
                    "audit verify: the database returned rows out of order".into(),
                ))
            }
            Err(ScanError::Store(e)) => return Err(e),
        }
    }
    Err(StoreError::Corrupt("audit verify: no pass ran".into()))
}

async fn verify_pass(
    store: &Store,
    keys: &[CheckpointVerifier],
    from: VerifyFrom,
    extra: Vec<(String, String)>,
    order: Order,
) -> Result<Report, ScanError> {
    let mut conn = store.pool().acquire().await?;
    let stored_cps = checkpoints(&mut conn).await?;
    let notes = stored_cps
        .into_iter()
        .map(|c| {
            (
                format!("database checkpoint of size {}", c.tree_size),
                c.note,
            )
        })
        .chain(extra);
    let (good, bad) = check_notes(keys, notes);
    let stored_size = tree_size(&mut conn).await?;
    let start = match from.seq {
        None => 0,
        Some(seq) => match entry_for_seq(&mut conn, seq).await? {
            Some((idx, _)) => idx,
            None => {
                return Err(StoreError::NotFound(
                    "audit event with that sequence number in the tree",
                )
                .into())
            }
        },
    };
    let frontier = stored_frontier(&mut conn, start).await?;
    let mut v = Verifier::resume(frontier, good);
    for f in bad {
        v.report(f);
    }
    let min_seq: Option<i64> = if start == 0 {
        None
    } else {
        sqlx::query("SELECT MIN(seq) AS s FROM audit_log_entries WHERE idx >= $1")
            .bind(to_i64(start)?)
            .fetch_one(&mut *conn)
            .await?
            .try_get("s")?
    };
    let bounds = Bounds {
        start: to_i64(start)?,
        end: to_i64(stored_size)?,
        start_id: to_i64(tlog_tiles_index(start))?,
        end_id: to_i64(tlog_tiles_index(stored_size))?,
        min_seq: min_seq.unwrap_or(i64::MIN),
    };
    let mut scans = audit_scan::open(store, bounds, order)?;
    let mut tree = TreeCheck::default();
    // Events met before the position that needs them (committed out of sequence order).
    let mut held: HashMap<i64, EventLeaf> = HashMap::new();
    let mut complete = true;
    while let Some(en) = scans.entries.next().await? {
        let idx = en.idx.max(0) as u64;
        if idx != v.next_index() {
            // A gap in the positions: the tree's shape is lost past it.
            v.report(Finding::Missing {
                index: v.next_index(),
                next_present: idx,
            });
            complete = false;
            break;
        }
        let first_id = tlog_tiles_index(idx);
        // The leaf_id column is a function of idx; a changed one is a changed tree.
        if en.leaf_id as u64 != first_id {
            tree.differs(&mut v, idx);
        }
        let tree_leaf = tree.leaf(&mut scans.tree, first_id, &mut v, idx).await?;
        let Some(ev) = take_event(&mut scans.events, &mut held, en.seq, order).await? else {
            // The tree still has the leaf: report the deleted event and carry on with it.
            v.report(Finding::Missing {
                index: idx,
                next_present: idx + 1,
            });
            match tree_leaf {
                Some(h) if idx == v.next_index() => {
                    v.push_stored_leaf_into(h, &mut tree.stored);
                    tree.rest(&mut scans.tree, (first_id, tree_leaf), &mut v, idx)
                        .await?;
                    continue;
                }
                _ => {
                    complete = false;
                    break;
                }
            }
        };
        // Compare with the leaf in the tree and with the hash written with the event.
        let expected = match (tree_leaf, ev.recorded) {
            (Some(t), Some(r)) if t != r => {
                v.report(Finding::LeafMismatch {
                    index: idx,
                    seq: en.seq,
                });
                t
            }
            (Some(t), _) => t,
            (None, Some(r)) => r,
            (None, None) => ev.leaf,
        };
        if !v.push_hashed(idx, en.seq, ev.leaf, &expected, &mut tree.stored) {
            complete = false;
            break;
        }
        tree.rest(&mut scans.tree, (first_id, tree_leaf), &mut v, idx)
            .await?;
    }
    if complete && v.next_index() == stored_size {
        // Stored hashes beyond the last leaf's are not part of the tree.
        if scans.tree.next().await?.is_some() {
            tree.differs(&mut v, stored_size.saturating_sub(1));
        }
        // The stored frontier (what proofs start from) must give the rebuilt root.
        if !tree.bad {
            match stored_frontier(&mut conn, stored_size).await {
                Ok(f) if f.root() == v.root() => {}
                _ => v.report(Finding::StoredTreeMismatch { size: stored_size }),
            }
        }
    }
    let unplaced = if complete {
        // Every event not taken by a position is either queued for the tree or unplaced.
        let mut rest: Vec<i64> = held.into_keys().collect();
        while let Some(e) = scans.events.next().await? {
            rest.push(e.seq);
        }
        rest.sort_unstable();
        first_unplaced(&mut conn, &rest).await?
    } else {
        drop(scans);
        sqlx::query(
            "SELECT e.seq FROM audit_events e WHERE NOT EXISTS \
             (SELECT 1 FROM audit_log_entries l WHERE l.seq = e.seq) AND NOT EXISTS \
             (SELECT 1 FROM audit_pending p WHERE p.seq = e.seq) ORDER BY e.seq LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<i64, _>("seq"))
        .transpose()?
    };
    if let Some(seq) = unplaced {
        v.report(Finding::NotInTree { seq });
    }
    Ok(v.finish())
}

/// The event with sequence number `seq`, from those held back or further on in the scan.
/// In key order the scan is past `seq` at the first larger one; in heap order only at its end,
/// and holding more than `HELD_MAX` events gives up the pass.
async fn take_event(
    events: &mut Scan<EventLeaf>,
    held: &mut HashMap<i64, EventLeaf>,
    seq: i64,
    order: Order,
) -> Result<Option<EventLeaf>, ScanError> {
    if let Some(e) = held.remove(&seq) {
        return Ok(Some(e));
    }
    loop {
        match events.peek().await? {
            Some(e) if e.seq <= seq || order == Order::Heap => {}
            // Past `seq` (the scan is in order) or at the end: there is no such event.
            _ => return Ok(None),
        }
        if held.len() >= HELD_MAX {
            return Err(ScanError::Unordered);
        }
        let Some(e) = events.next().await? else {
            return Ok(None);
        };
        if e.seq == seq {
            return Ok(Some(e));
        }
        held.insert(e.seq, e);
    }
}

/// The first of `seqs` (ascending) that is neither in the tree nor queued for it.
async fn first_unplaced(conn: &mut AnyConnection, seqs: &[i64]) -> Result<Option<i64>, StoreError> {
    for chunk in seqs.chunks(1000) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let row = sqlx::query(&format!(
            "SELECT e.seq FROM audit_events e WHERE e.seq IN ({list}) AND NOT EXISTS \
             (SELECT 1 FROM audit_log_entries l WHERE l.seq = e.seq) AND NOT EXISTS \
             (SELECT 1 FROM audit_pending p WHERE p.seq = e.seq) ORDER BY e.seq LIMIT 1"
        ))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = row {
            return Ok(Some(r.try_get("seq")?));
        }
    }
    Ok(None)
}

/// Compares the stored tree hashes with the ones the rebuilt tree would store, position by
/// position; the first difference is reported once.
#[derive(Default)]
struct TreeCheck {
    /// The hashes the last pushed leaf stores: the leaf, then each subtree it completes.
    stored: Vec<Hash>,
    bad: bool,
}

impl TreeCheck {
    fn differs(&mut self, v: &mut Verifier, idx: u64) {
        if !self.bad {
            self.bad = true;
            v.report(Finding::StoredTreeMismatch { size: idx + 1 });
        }
    }

    /// The stored leaf hash of position `idx` (at stored index `first_id`), skipping and
    /// reporting stored hashes that should not be there.
    async fn leaf(
        &mut self,
        tree: &mut Scan<TreeNode>,
        first_id: u64,
        v: &mut Verifier,
        idx: u64,
    ) -> Result<Option<Hash>, ScanError> {
        while let Some(n) = tree.peek().await? {
            let id = n.id.max(-1);
            if id >= 0 && id as u64 >= first_id {
                break;
            }
            tree.next().await?;
            self.differs(v, idx);
        }
        let found = match tree.peek().await? {
            Some(n) if n.id >= 0 && n.id as u64 == first_id => tree.next().await?,
            _ => None,
        };
        match found {
            Some(TreeNode { hash: Some(h), .. }) => Ok(Some(h)),
            _ => {
                self.differs(v, idx);
                Ok(None)
            }
        }
    }

    /// Checks the stored leaf against the pushed one and reads the subtree hashes after it.
    async fn rest(
        &mut self,
        tree: &mut Scan<TreeNode>,
        (first_id, tree_leaf): (u64, Option<Hash>),
        v: &mut Verifier,
        idx: u64,
    ) -> Result<(), ScanError> {
        let mut ok = tree_leaf.is_some() && tree_leaf.as_ref() == self.stored.first();
        for (k, want) in self.stored.iter().enumerate().skip(1) {
            let id = first_id + k as u64;
            match tree.peek().await? {
                Some(n) if n.id >= 0 && n.id as u64 == id => {
                    ok &= n.hash.as_ref() == Some(want);
                    tree.next().await?;
                }
                _ => ok = false,
            }
        }
        if !ok {
            self.differs(v, idx);
        }
        Ok(())
    }
}

/// Records a verification result for `GET /api/v1/audit/status`.
pub async fn record_verification(
    conn: &mut AnyConnection,
    at: i64,
    report: &Report,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_verifications (at, ok, events_checked, tree_size, first_problem) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(i64::from(report.ok()))
    .bind(to_i64(report.events_checked)?)
    .bind(to_i64(report.tree_size)?)
    .bind(report.findings.first().map(ToString::to_string))
    .execute(conn)
    .await?;
    Ok(())
}

/// The last recorded verification.
#[derive(Debug, Clone)]
pub struct VerificationRecord {
    /// When (Unix seconds).
    pub at: i64,
    /// Whether the log verified.
    pub ok: bool,
    /// Events checked.
    pub events_checked: u64,
    /// Tree size reached.
    pub tree_size: u64,
    /// The first problem, if any.
    pub first_problem: Option<String>,
}

/// The newest verification record.
pub async fn last_verification(
    conn: &mut AnyConnection,
) -> Result<Option<VerificationRecord>, StoreError> {
    let r = sqlx::query(
        "SELECT at, ok, events_checked, tree_size, first_problem FROM audit_verifications \
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    r.map(|r| {
        Ok(VerificationRecord {
            at: r.try_get("at")?,
            ok: r.try_get::<i64, _>("ok")? != 0,
            events_checked: r.try_get::<i64, _>("events_checked")?.max(0) as u64,
            tree_size: r.try_get::<i64, _>("tree_size")?.max(0) as u64,
            first_problem: r.try_get("first_problem")?,
        })
    })
    .transpose()
}

type Pending = (AuditEvent, oneshot::Sender<Result<(), String>>);

/// Group commit for events that have no transaction of their own (failed logins, denials,
/// session ends, audit reads): callers queue an event and wait; one task writes everything
/// queued in one transaction and answers each caller after the commit, so an acknowledged
/// event is durable. Cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Pending>,
    integrate: std::sync::Arc<Notify>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Appender")
    }
}

/// Most events one group commit takes.
const GROUP_MAX: usize = 2000;

/// Group-commit writers working in parallel: two, so one batch is gathered (and, over a network,
/// sent) while the other commits. Measured with 32 writers on this 2-core machine (appends/s,
/// PostgreSQL / SQLite): 1 writer 23.6–27.5k / 26–29k, 2 writers 25.2–25.4k / 22–23k, 4 writers
/// 17.6–20.9k / 16–19k, 8 writers 12–16k / 13k: more writers make smaller batches that each pay
/// a commit. Two keep the local figure and overlap a remote database's round trips.
const GROUP_WRITERS: usize = 2;

impl Appender {
    /// Starts the writer task on the current runtime. `integrate` is notified after each commit
    /// (the integrator waits on it).
    pub fn start(store: Store, integrate: std::sync::Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel::<Pending>(16_384);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        // A few writers, so one batch can be gathered while another commits (on PostgreSQL the
        // commits then share WAL flushes); on SQLite they take turns on its one connection.
        for _ in 0..GROUP_WRITERS {
            let (store, rx, notify) = (store.clone(), rx.clone(), integrate.clone());
            tokio::spawn(async move {
                let mut batch: Vec<Pending> = Vec::with_capacity(GROUP_MAX);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else {
                            return;
                        };
                        batch.push(first);
                        while batch.len() < GROUP_MAX {
                            match rx.try_recv() {
                                Ok(p) => batch.push(p),
                                Err(_) => break,
                            }
                        }
                    }
                    let events: Vec<AuditEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
                    let result = async {
                        if events.len() <= crate::audit::BATCH_ROWS {
                            // One statement is atomic on its own: no BEGIN and COMMIT round
                            // trips, and the commit (with its WAL flush) ends the statement.
                            let mut conn = store.pool().acquire().await?;
                            crate::audit::append_many(&mut conn, &events).await?;
                        } else {
                            let mut t = store.begin().await?;
                            crate::audit::append_many(&mut t, &events).await?;
                            t.commit().await?;
                        }
                        Ok::<(), StoreError>(())
                    }
                    .await
                    .map_err(|e| e.to_string());
                    for (_, ack) in batch.drain(..) {
                        let _ = ack.send(result.clone());
                    }
                    notify.notify_one();
                }
            });
        }
        Self { tx, integrate }
    }

    /// Queues `e` and waits until it is committed.
    pub async fn append(&self, e: AuditEvent) -> Result<(), StoreError> {
        let (ack, wait) = oneshot::channel();
        self.tx
            .send((e, ack))
            .await
            .map_err(|_| StoreError::Corrupt("audit appender has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Corrupt("audit appender has stopped".into()))?
            .map_err(StoreError::Corrupt)
    }

    /// Wakes the integrator (after an event committed in a caller's own transaction).
    pub fn committed(&self) {
        self.integrate.notify_one();
    }
}

/// An inclusion proof of the event with sequence number `seq` against the smallest stored
/// checkpoint that covers it (or, with `size`, against the checkpoint of exactly that size).
pub async fn inclusion_proof(
    conn: &mut AnyConnection,
    seq: i64,
    size: Option<u64>,
) -> Result<medai_audit::proof::InclusionProof, StoreError> {
    let (idx, stored) = entry_for_seq(conn, seq).await?.ok_or(StoreError::NotFound(
        "audit event in the Merkle tree (it may still be pending)",
    ))?;
    let cp = match size {
        Some(s) => checkpoint_at_least(conn, s)
            .await?
            .filter(|c| c.tree_size == s),
        None => checkpoint_at_least(conn, idx + 1).await?,
    }
    .ok_or(StoreError::NotFound(
        "signed checkpoint covering that event (wait for the next checkpoint)",
    ))?;
    let need = medai_audit::tree::inclusion_proof_indexes(idx, cp.tree_size);
    let hashes = stored_hashes(conn, &need).await?;
    let path = medai_audit::tree::inclusion_proof(idx, cp.tree_size, &hashes)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(medai_audit::proof::InclusionProof {
        format: medai_audit::proof::INCLUSION_FORMAT.into(),
        seq,
        index: idx,
        event: stored.event,
        path: medai_audit::proof::encode_path(&path),
        checkpoint: cp.note,
    })
}

/// A consistency proof between the stored checkpoints of `old` and `new` leaves.
pub async fn consistency_proof(
    conn: &mut AnyConnection,
    old: u64,
    new: u64,
) -> Result<medai_audit::proof::ConsistencyProof, StoreError> {
    if old > new {
        return Err(StoreError::Corrupt(format!(
            "old size {old} is larger than new size {new}"
        )));
    }
    let find = |c: Option<StoredCheckpoint>, s: u64| c.filter(|c| c.tree_size == s);
    let old_cp = find(checkpoint_at_least(conn, old).await?, old)
        .ok_or(StoreError::NotFound("signed checkpoint of the old size"))?;
    let new_cp = find(checkpoint_at_least(conn, new).await?, new)
        .ok_or(StoreError::NotFound("signed checkpoint of the new size"))?;
    let path = if old == 0 {
        Vec::new()
    } else {
        let need = medai_audit::tree::consistency_proof_indexes(old, new);
        let hashes = stored_hashes(conn, &need).await?;
        medai_audit::tree::consistency_proof(old, new, &hashes)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
    };
    Ok(medai_audit::proof::ConsistencyProof {
        format: medai_audit::proof::CONSISTENCY_FORMAT.into(),
        old_checkpoint: old_cp.note,
        new_checkpoint: new_cp.note,
        path: medai_audit::proof::encode_path(&path),
    })
}
