//! The audit verifier's reads: three ordered scans (tree positions by index, events by sequence
//! number, stored tree hashes by id) that `audit_log::verify` merges, instead of one three-way
//! join read in pages.
//!
//! Why: over 1,000,000 events the paged join through sqlx's `Any` driver delivered 140k rows/s on
//! PostgreSQL (the server sorts the join; every value is converted twice) and 60k rows/s on
//! SQLite (sqlx's SQLite driver hands each row across threads). Each table read in its own
//! primary-key order costs the database a plain index scan (PostgreSQL 0.2 s per million rows
//! here, SQLite 0.1–0.5 s). The scans run on connections of their own, concurrently: native
//! `sqlx` connections on PostgreSQL, read-only `rusqlite` connections on their own threads on
//! SQLite. The events scan recomputes each leaf hash from the borrowed row as it reads it, so
//! leaf hashing runs beside the tree building.
//!
//! On PostgreSQL the rows come as binary `COPY` output, parsed here: sqlx's per-row machinery
//! (async stream, type checks, tracing) cost 2.7 CPU-seconds per million events, the parse a
//! fraction of that. An ordered index scan costs the server twice a plain table scan (1.25 s
//! against 0.63 s for a million events here), and an append-only table's heap is nearly in key
//! order (blocks of a few thousand rows land out of place), so the first pass reads the tables
//! in heap order (`Order::Heap`). Positions and tree hashes have contiguous keys, so a reorder
//! buffer puts them back in order as they arrive; events are matched to positions by the merge,
//! which holds back the ones that come early. Either way at most `HELD_MAX` rows are held: past
//! that the pass stops with `ScanError::Unordered` and verification starts again with ordered
//! scans (`Order::Key`), so memory stays bounded whatever the table looks like on disk.
//!
//! The scans see different snapshots; the log is append-only, so bounding the positions and tree
//! hashes by the tree size taken before they start makes them agree. Events are not bounded:
//! the merge takes the ones it needs and the caller checks what is left over.

use crate::{DatabaseKind, Store, StoreError};
use futures_util::TryStreamExt as _;
use medai_audit::leaf::EventFields;
use medai_audit::Hash;
use sqlx::Connection as _;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Rows per message between a scan and the merge.
const BATCH: usize = 4096;

/// Most rows a heap-order pass holds back per scan while waiting for the one due next; past it
/// the pass gives up for an ordered one, so memory stays bounded.
pub(crate) const HELD_MAX: usize = 1 << 18;

/// How the tables are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// In key order (an index scan).
    Key,
    /// In the table's physical order, checked as it arrives.
    Heap,
}

/// Why a verification pass stopped.
#[derive(Debug)]
pub(crate) enum ScanError {
    /// A heap-order pass met rows out of key order; start again with `Order::Key`.
    Unordered,
    /// Anything else.
    Store(StoreError),
}

impl From<StoreError> for ScanError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sqlx::Error> for ScanError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A tree position.
pub(crate) struct Entry {
    pub idx: i64,
    pub seq: i64,
    pub leaf_id: i64,
}

/// An event, read and hashed.
pub(crate) struct EventLeaf {
    pub seq: i64,
    /// Recomputed from the stored fields.
    pub leaf: Hash,
    /// The leaf hash written with the event.
    pub recorded: Option<Hash>,
}

/// A stored tree hash; `hash` is `None` when the stored value is not 32 bytes.
pub(crate) struct TreeNode {
    pub id: i64,
    pub hash: Option<Hash>,
}

/// What to read: positions `start..end`, tree hashes `start_id..end_id`, events from `min_seq`.
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub start: i64,
    pub end: i64,
    pub start_id: i64,
    pub end_id: i64,
    pub min_seq: i64,
}

/// One scan's rows, in order, as the merge pulls them.
pub(crate) struct Scan<T> {
    rx: mpsc::Receiver<Vec<T>>,
    batch: std::vec::IntoIter<T>,
    peeked: Option<T>,
    task: Option<JoinHandle<Result<(), ScanError>>>,
}

impl<T> Scan<T> {
    fn new(rx: mpsc::Receiver<Vec<T>>, task: JoinHandle<Result<(), ScanError>>) -> Self {
        Self {
            rx,
            batch: Vec::new().into_iter(),
            peeked: None,
            task: Some(task),
        }
    }

    /// The next row; `None` at the end. A failed scan's error comes out here.
    pub async fn next(&mut self) -> Result<Option<T>, ScanError> {
        if let Some(x) = self.peeked.take() {
            return Ok(Some(x));
        }
        loop {
            if let Some(x) = self.batch.next() {
                return Ok(Some(x));
            }
            match self.rx.recv().await {
                Some(b) => self.batch = b.into_iter(),
                None => {
                    if let Some(task) = self.task.take() {
                        task.await.map_err(|e| {
                            StoreError::Corrupt(format!("audit scan stopped: {e}"))
                        })??;
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The next row without taking it.
    pub async fn peek(&mut self) -> Result<Option<&T>, ScanError> {
        if self.peeked.is_none() {
            self.peeked = self.next().await?;
        }
        Ok(self.peeked.as_ref())
    }
}

/// The three scans.
pub(crate) struct Scans {
    pub entries: Scan<Entry>,
    pub events: Scan<EventLeaf>,
    pub tree: Scan<TreeNode>,
}

/// The three queries; bounds are inlined (they are integers of ours) because `COPY` takes no
/// parameters.
fn queries(b: Bounds, order: Order) -> [String; 3] {
    let by = |key: &str| match order {
        Order::Key => format!(" ORDER BY {key}"),
        Order::Heap => String::new(),
    };
    [
        format!(
            "SELECT idx, seq, leaf_id FROM audit_log_entries WHERE idx >= {} AND idx < {}{}",
            b.start,
            b.end,
            by("idx")
        ),
        format!(
            "SELECT seq, at, actor_id, actor_role, action, target_user_id, patient_id, outcome, \
             client_addr, request_id, detail, leaf_hash FROM audit_events WHERE seq >= {}{}",
            b.min_seq,
            by("seq")
        ),
        format!(
            "SELECT id, hash FROM audit_tree_hashes WHERE id >= {} AND id < {}{}",
            b.start_id,
            b.end_id,
            by("id")
        ),
    ]
}

/// Starts the three scans. SQLite always reads in key order (its tables are stored by key).
pub(crate) fn open(store: &Store, b: Bounds, order: Order) -> Result<Scans, StoreError> {
    match store.kind() {
        DatabaseKind::Postgres => {
            let url = store.url().to_owned();
            let [entries, events, tree] = queries(b, order);
            let heap = order == Order::Heap;
            let by_idx = heap.then(|| Reorder::new(b.start, |e: &Entry| e.idx));
            let by_id = heap.then(|| Reorder::new(b.start_id, |n: &TreeNode| n.id));
            Ok(Scans {
                entries: pg_scan(url.clone(), entries, pg_entry, heap, by_idx),
                events: pg_scan(url.clone(), events, pg_event, heap, None),
                tree: pg_scan(url, tree, pg_node, heap, by_id),
            })
        }
        DatabaseKind::Sqlite => {
            let path = sqlite_file(store.url())?;
            let [entries, events, tree] = queries(b, Order::Key);
            Ok(Scans {
                entries: sqlite_scan(path.clone(), entries, sq_entry),
                events: sqlite_scan(path.clone(), events, sq_event),
                tree: sqlite_scan(path, tree, sq_node),
            })
        }
    }
}

fn hash32(raw: Option<&[u8]>) -> Option<Option<Hash>> {
    raw.map(|r| <[u8; 32]>::try_from(r).ok().map(Hash))
}

/// The outcome as the canonical encoding spells it; an unknown one is corruption.
fn outcome(text: &str, seq: i64) -> Result<&'static str, StoreError> {
    crate::audit::parse_outcome(text)
        .map(|o| o.as_str())
        .ok_or_else(|| StoreError::Corrupt(format!("audit event {seq} has an unknown outcome")))
}

fn event_leaf(
    seq: i64,
    fields: &EventFields<'_>,
    recorded: Option<&[u8]>,
    buf: &mut Vec<u8>,
) -> Result<EventLeaf, StoreError> {
    let recorded = match hash32(recorded) {
        None => None,
        Some(Some(h)) => Some(h),
        Some(None) => {
            return Err(StoreError::Corrupt(format!(
                "the leaf hash of audit event {seq} is not a 32-byte hash"
            )))
        }
    };
    Ok(EventLeaf {
        seq,
        leaf: fields.leaf_hash(buf),
        recorded,
    })
}

// ---- PostgreSQL: binary COPY output on native connections, parsed here.

/// A parser of PostgreSQL's binary `COPY` format: an 11-byte signature, a 32-bit flags field,
/// a 32-bit length of the header extension and the extension, then tuples (a 16-bit field count,
/// then per field a 32-bit length, -1 for NULL, and the bytes), then a field count of -1.
#[derive(Default)]
struct CopyBinary {
    buf: Vec<u8>,
    pos: usize,
    header: bool,
    ended: bool,
    /// The last tuple's fields: byte ranges in `buf`, `None` for NULL.
    fields: Vec<Option<(usize, usize)>>,
}

const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyBinary {
    fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn bad(what: &str) -> StoreError {
        StoreError::Corrupt(format!("audit scan: unexpected COPY output ({what})"))
    }

    fn int_at(&self, at: usize, len: usize) -> Option<i64> {
        let b = self.buf.get(at..at + len)?;
        Some(b.iter().fold(0i64, |acc, x| (acc << 8) | i64::from(*x)))
    }

    /// Parses the next complete tuple into `fields`; `Ok(false)` when more input is needed or
    /// the trailer was reached.
    fn next_tuple(&mut self) -> Result<bool, StoreError> {
        if self.ended {
            return Ok(false);
        }
        if !self.header {
            let Some(ext) = self.int_at(self.pos + 15, 4) else {
                return Ok(false);
            };
            if self.buf.get(self.pos..self.pos + 11) != Some(COPY_SIGNATURE.as_slice()) {
                return Err(Self::bad("signature"));
            }
            let body = self.pos + 19 + usize::try_from(ext).map_err(|_| Self::bad("header"))?;
            if self.buf.len() < body {
                return Ok(false);
            }
            self.pos = body;
            self.header = true;
        }
        let Some(count) = self.int_at(self.pos, 2) else {
            return Ok(false);
        };
        let count = i64::from(count as u16 as i16);
        if count == -1 {
            self.ended = true;
            self.pos += 2;
            return Ok(false);
        }
        let count = usize::try_from(count).map_err(|_| Self::bad("field count"))?;
        let mut at = self.pos + 2;
        self.fields.clear();
        for _ in 0..count {
            let Some(len) = self.int_at(at, 4) else {
                return Ok(false);
            };
            let len = i64::from(len as u32 as i32);
            at += 4;
            if len < 0 {
                self.fields.push(None);
                continue;
            }
            let len = len as usize;
            if self.buf.len() < at + len {
                return Ok(false);
            }
            self.fields.push(Some((at, at + len)));
            at += len;
        }
        self.pos = at;
        Ok(true)
    }

    fn row(&self) -> Fields<'_> {
        Fields {
            buf: &self.buf,
            ranges: &self.fields,
        }
    }
}

/// One tuple of binary COPY output.
struct Fields<'a> {
    buf: &'a [u8],
    ranges: &'a [Option<(usize, usize)>],
}

impl<'a> Fields<'a> {
    fn raw(&self, i: usize) -> Result<Option<&'a [u8]>, StoreError> {
        match self.ranges.get(i) {
            Some(Some((a, b))) => Ok(Some(&self.buf[*a..*b])),
            Some(None) => Ok(None),
            None => Err(CopyBinary::bad("too few fields")),
        }
    }

    /// A `bigint` (or `integer`) column.
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.raw(i)? {
            Some(b) if b.len() == 8 => Ok(i64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
            Some(b) if b.len() == 4 => Ok(i64::from(i32::from_be_bytes(
                b.try_into().unwrap_or([0; 4]),
            ))),
            _ => Err(CopyBinary::bad("integer")),
        }
    }

    fn text(&self, i: usize, seq: i64) -> Result<Option<&'a str>, StoreError> {
        self.raw(i)?
            .map(|b| {
                std::str::from_utf8(b)
                    .map_err(|e| StoreError::Corrupt(format!("audit event {seq}, column {i}: {e}")))
            })
            .transpose()
    }

    fn required(&self, i: usize, seq: i64) -> Result<&'a str, StoreError> {
        self.text(i, seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("audit event {seq}, column {i} is empty")))
    }
}

/// Puts rows with contiguous keys, read nearly in order, back in key order: a row is passed on
/// when its key is the next one due, held otherwise. At the end what is held (rows after a
/// missing key) follows, sorted.
struct Reorder<T> {
    next: i64,
    key: fn(&T) -> i64,
    held: HashMap<i64, T>,
}

impl<T> Reorder<T> {
    /// Rows from key `next` on, keyed by `key`.
    fn new(next: i64, key: fn(&T) -> i64) -> Self {
        Self {
            next,
            key,
            held: HashMap::new(),
        }
    }

    fn push(&mut self, t: T, out: &mut Vec<T>) -> Result<(), ScanError> {
        let k = (self.key)(&t);
        if k == self.next {
            out.push(t);
            self.next += 1;
            while let Some(t) = self.held.remove(&self.next) {
                out.push(t);
                self.next += 1;
            }
            Ok(())
        } else if k < self.next || self.held.len() >= HELD_MAX {
            Err(ScanError::Unordered)
        } else {
            self.held.insert(k, t);
            Ok(())
        }
    }

    fn finish(self) -> Vec<T> {
        let key = self.key;
        let mut rest: Vec<T> = self.held.into_values().collect();
        rest.sort_unstable_by_key(key);
        rest
    }
}

fn pg_scan<T: Send + 'static>(
    url: String,
    sql: String,
    row: fn(&Fields<'_>, &mut Vec<u8>) -> Result<T, StoreError>,
    heap: bool,
    mut reorder: Option<Reorder<T>>,
) -> Scan<T> {
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        use std::str::FromStr as _;
        // A table scan may otherwise join one in progress midway, or be split among parallel
        // workers whose rows interleave; in heap order the planner may pick an index for the
        // range bounds, and the point is not to.
        let mut settings = vec![
            ("synchronize_seqscans", "off"),
            ("max_parallel_workers_per_gather", "0"),
        ];
        if heap {
            settings.extend([
                ("enable_indexscan", "off"),
                ("enable_indexonlyscan", "off"),
                ("enable_bitmapscan", "off"),
            ]);
        }
        let options = sqlx::postgres::PgConnectOptions::from_str(&url)?.options(settings);
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        {
            let mut out = conn
                .copy_out_raw(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)"))
                .await?;
            let mut parser = CopyBinary::default();
            let mut batch = Vec::with_capacity(BATCH);
            let mut buf = Vec::with_capacity(256);
            while let Some(chunk) = out.try_next().await? {
                parser.feed(&chunk);
                while parser.next_tuple()? {
                    let t = row(&parser.row(), &mut buf)?;
                    match reorder.as_mut() {
                        Some(r) => r.push(t, &mut batch)?,
                        None => batch.push(t),
                    }
                    if batch.len() >= BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if tx.send(full).await.is_err() {
                            return Ok(()); // the merge stopped early
                        }
                    }
                }
            }
            if !parser.ended {
                return Err(CopyBinary::bad("no trailer").into());
            }
            if let Some(r) = reorder {
                batch.extend(r.finish());
            }
            let mut rest = batch.into_iter().peekable();
            while rest.peek().is_some() {
                let part: Vec<T> = rest.by_ref().take(BATCH).collect();
                if tx.send(part).await.is_err() {
                    return Ok(());
                }
            }
        }
        conn.close().await?;
        Ok(())
    });
    Scan::new(rx, task)
}

fn pg_entry(r: &Fields<'_>, _: &mut Vec<u8>) -> Result<Entry, StoreError> {
    Ok(Entry {
        idx: r.int(0)?,
        seq: r.int(1)?,
        leaf_id: r.int(2)?,
    })
}

fn pg_node(r: &Fields<'_>, _: &mut Vec<u8>) -> Result<TreeNode, StoreError> {
    Ok(TreeNode {
        id: r.int(0)?,
        hash: hash32(r.raw(1)?).flatten(),
    })
}

fn pg_event(r: &Fields<'_>, buf: &mut Vec<u8>) -> Result<EventLeaf, StoreError> {
    let seq = r.int(0)?;
    let fields = EventFields {
        at: r.int(1)?,
        actor_id: r.text(2, seq)?,
        actor_role: r.text(3, seq)?,
        action: r.required(4, seq)?,
        target_user_id: r.text(5, seq)?,
        patient_id: r.text(6, seq)?,
        outcome: outcome(r.required(7, seq)?, seq)?,
        client_addr: r.text(8, seq)?,
        request_id: r.text(9, seq)?,
        detail: r.text(10, seq)?,
    };
    event_leaf(seq, &fields, r.raw(11)?, buf)
}

// ---- SQLite: read-only rusqlite connections, each scan on a thread of its own.

/// The database file behind a `sqlite:` URL; an in-memory database cannot be opened twice.
fn sqlite_file(url: &str) -> Result<std::path::PathBuf, StoreError> {
    use std::str::FromStr as _;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    let path = opts.get_filename();
    let name = path.to_string_lossy();
    if name.is_empty() || name.contains(":memory:") || name.starts_with("file:") {
        return Err(StoreError::Schema(
            "audit verification reads the database on connections of its own, which an \
             in-memory SQLite database does not allow; use a database file"
                .into(),
        ));
    }
    Ok(path.to_path_buf())
}

fn sqlite_scan<T: Send + 'static>(
    path: std::path::PathBuf,
    sql: String,
    row: fn(&rusqlite::Row<'_>, &mut Vec<u8>) -> Result<T, StoreError>,
) -> Scan<T> {
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::task::spawn_blocking(move || -> Result<(), ScanError> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(StoreError::from)?;
        let mut stmt = conn.prepare(&sql).map_err(StoreError::from)?;
        let mut rows = stmt.query([]).map_err(StoreError::from)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut buf = Vec::with_capacity(256);
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            batch.push(row(r, &mut buf)?);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.blocking_send(full).is_err() {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok(())
    });
    Scan::new(rx, task)
}

fn sq_text<'r>(
    r: &'r rusqlite::Row<'_>,
    i: usize,
    seq: i64,
) -> Result<Option<&'r str>, StoreError> {
    r.get_ref(i)?
        .as_str_or_null()
        .map_err(|e| StoreError::Corrupt(format!("audit event {seq}, column {i}: {e}")))
}

fn sq_required<'r>(r: &'r rusqlite::Row<'_>, i: usize, seq: i64) -> Result<&'r str, StoreError> {
    sq_text(r, i, seq)?
        .ok_or_else(|| StoreError::Corrupt(format!("audit event {seq}, column {i} is empty")))
}

fn sq_entry(r: &rusqlite::Row<'_>, _: &mut Vec<u8>) -> Result<Entry, StoreError> {
    Ok(Entry {
        idx: r.get(0)?,
        seq: r.get(1)?,
        leaf_id: r.get(2)?,
    })
}

fn sq_node(r: &rusqlite::Row<'_>, _: &mut Vec<u8>) -> Result<TreeNode, StoreError> {
    Ok(TreeNode {
        id: r.get(0)?,
        hash: hash32(r.get_ref(1)?.as_blob_or_null().ok().flatten()).flatten(),
    })
}

fn sq_event(r: &rusqlite::Row<'_>, buf: &mut Vec<u8>) -> Result<EventLeaf, StoreError> {
    let seq: i64 = r.get(0)?;
    let fields = EventFields {
        at: r.get(1)?,
        actor_id: sq_text(r, 2, seq)?,
        actor_role: sq_text(r, 3, seq)?,
        action: sq_required(r, 4, seq)?,
        target_user_id: sq_text(r, 5, seq)?,
        patient_id: sq_text(r, 6, seq)?,
        outcome: outcome(sq_required(r, 7, seq)?, seq)?,
        client_addr: sq_text(r, 8, seq)?,
        request_id: sq_text(r, 9, seq)?,
        detail: sq_text(r, 10, seq)?,
    };
    let recorded = r
        .get_ref(11)?
        .as_blob_or_null()
        .map_err(|e| StoreError::Corrupt(format!("the leaf hash of audit event {seq}: {e}")))?;
    event_leaf(seq, &fields, recorded, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary COPY output for rows of (bigint, nullable bytes).
    fn copy_output(rows: &[(i64, Option<&[u8]>)]) -> Vec<u8> {
        let mut out = COPY_SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes()); // flags
        out.extend_from_slice(&3u32.to_be_bytes()); // an extension area the parser must skip
        out.extend_from_slice(b"ext");
        for (k, v) in rows {
            out.extend_from_slice(&2i16.to_be_bytes());
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&k.to_be_bytes());
            match v {
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    type Rows = Vec<(i64, Option<Vec<u8>>)>;

    fn parse_in_pieces(data: &[u8], piece: usize) -> Result<Rows, StoreError> {
        let mut p = CopyBinary::default();
        let mut rows = Vec::new();
        for chunk in data.chunks(piece) {
            p.feed(chunk);
            while p.next_tuple()? {
                let f = p.row();
                rows.push((f.int(0)?, f.raw(1)?.map(<[u8]>::to_vec)));
            }
        }
        assert!(p.ended, "the trailer ends the output");
        Ok(rows)
    }

    #[test]
    fn copy_output_parses_whatever_the_chunk_boundaries() {
        let rows: Vec<(i64, Option<&[u8]>)> = vec![
            (1, Some(b"alpha")),
            (-7, None),
            (i64::MAX, Some(b"")),
            (300, Some("\u{e9}t\u{e9}".as_bytes())),
        ];
        let data = copy_output(&rows);
        let want: Rows = rows
            .iter()
            .map(|(k, v)| (*k, v.map(<[u8]>::to_vec)))
            .collect();
        for piece in [1, 2, 3, 7, 19, data.len()] {
            assert_eq!(
                parse_in_pieces(&data, piece).unwrap(),
                want,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn malformed_copy_output_is_an_error_not_rows() {
        let mut data = copy_output(&[(1, Some(b"x"))]);
        data[0] = b'X';
        assert!(matches!(
            parse_in_pieces(&data, 64),
            Err(StoreError::Corrupt(m)) if m.contains("signature")
        ));
        // An integer column of the wrong width.
        let mut p = CopyBinary::default();
        let mut data = copy_output(&[]);
        data.truncate(data.len() - 2);
        data.extend_from_slice(&1i16.to_be_bytes());
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"abc");
        p.feed(&data);
        assert!(p.next_tuple().unwrap());
        assert!(p.row().int(0).is_err());
        assert!(p.row().raw(1).is_err(), "a field the tuple does not have");
        // Output cut short is never taken for a whole tuple.
        let data = copy_output(&[(5, Some(b"hello"))]);
        let mut p = CopyBinary::default();
        p.feed(&data[..data.len() - 4]);
        assert!(!p.next_tuple().unwrap());
        assert!(!p.ended);
    }

    fn key(x: &i64) -> i64 {
        *x
    }

    #[test]
    fn reorder_restores_key_order_and_gives_up_when_too_much_is_out_of_place() {
        let mut r = Reorder::new(10, key);
        let mut out = Vec::new();
        for k in [10, 12, 13, 11, 14, 17, 16] {
            r.push(k, &mut out).unwrap();
        }
        assert_eq!(out, vec![10, 11, 12, 13, 14]);
        // 15 never came (a deleted row): what followed comes last, sorted.
        out.extend(r.finish());
        assert_eq!(out, vec![10, 11, 12, 13, 14, 16, 17]);

        // A key before the one due cannot be placed.
        let mut r = Reorder::new(0, key);
        let mut out = Vec::new();
        r.push(0, &mut out).unwrap();
        assert!(matches!(r.push(0, &mut out), Err(ScanError::Unordered)));

        // Memory is bounded: past HELD_MAX held rows the pass gives up.
        let mut r = Reorder::new(0, key);
        let mut out = Vec::new();
        for k in 1..=HELD_MAX as i64 {
            r.push(k, &mut out).unwrap();
        }
        assert!(out.is_empty());
        assert!(matches!(
            r.push(HELD_MAX as i64 + 1, &mut out),
            Err(ScanError::Unordered)
        ));
    }
}
