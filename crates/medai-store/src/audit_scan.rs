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
//! The scans see different snapshots; the log is append-only, so bounding the positions and tree
//! hashes by the tree size taken before they start makes them agree. Events are not bounded:
//! the merge takes the ones it needs and the caller checks what is left over.

use crate::{DatabaseKind, Store, StoreError};
use futures_util::TryStreamExt as _;
use medai_audit::leaf::EventFields;
use medai_audit::Hash;
use sqlx::{Connection as _, Row as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Rows per message between a scan and the merge.
const BATCH: usize = 4096;

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
    task: Option<JoinHandle<Result<(), StoreError>>>,
}

impl<T> Scan<T> {
    fn new(rx: mpsc::Receiver<Vec<T>>, task: JoinHandle<Result<(), StoreError>>) -> Self {
        Self {
            rx,
            batch: Vec::new().into_iter(),
            peeked: None,
            task: Some(task),
        }
    }

    /// The next row; `None` at the end. A failed scan's error comes out here.
    pub async fn next(&mut self) -> Result<Option<T>, StoreError> {
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
    pub async fn peek(&mut self) -> Result<Option<&T>, StoreError> {
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

const ENTRIES_SQL: &str =
    "SELECT idx, seq, leaf_id FROM audit_log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx";
const EVENTS_SQL: &str = "SELECT seq, at, actor_id, actor_role, action, target_user_id, \
     patient_id, outcome, client_addr, request_id, detail, leaf_hash FROM audit_events \
     WHERE seq >= $1 ORDER BY seq";
const TREE_SQL: &str =
    "SELECT id, hash FROM audit_tree_hashes WHERE id >= $1 AND id < $2 ORDER BY id";

/// Starts the three scans.
pub(crate) fn open(store: &Store, b: Bounds) -> Result<Scans, StoreError> {
    match store.kind() {
        DatabaseKind::Postgres => {
            let url = store.url().to_owned();
            Ok(Scans {
                entries: pg_scan(url.clone(), ENTRIES_SQL, vec![b.start, b.end], pg_entry),
                events: pg_scan(url.clone(), EVENTS_SQL, vec![b.min_seq], pg_event),
                tree: pg_scan(url, TREE_SQL, vec![b.start_id, b.end_id], pg_node),
            })
        }
        DatabaseKind::Sqlite => {
            let path = sqlite_file(store.url())?;
            Ok(Scans {
                entries: sqlite_scan(path.clone(), ENTRIES_SQL, vec![b.start, b.end], sq_entry),
                events: sqlite_scan(path.clone(), EVENTS_SQL, vec![b.min_seq], sq_event),
                tree: sqlite_scan(path, TREE_SQL, vec![b.start_id, b.end_id], sq_node),
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

// ---- PostgreSQL: native sqlx connections, rows decoded in place.

type PgRow = sqlx::postgres::PgRow;

fn pg_scan<T: Send + 'static>(
    url: String,
    sql: &'static str,
    binds: Vec<i64>,
    row: fn(&PgRow, &mut Vec<u8>) -> Result<T, StoreError>,
) -> Scan<T> {
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            let mut rows = q.fetch(&mut conn);
            let mut batch = Vec::with_capacity(BATCH);
            let mut buf = Vec::with_capacity(256);
            while let Some(r) = rows.try_next().await? {
                batch.push(row(&r, &mut buf)?);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(full).await.is_err() {
                        return Ok(()); // the merge stopped early
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch).await;
            }
        }
        conn.close().await?;
        Ok(())
    });
    Scan::new(rx, task)
}

fn pg_entry(r: &PgRow, _: &mut Vec<u8>) -> Result<Entry, StoreError> {
    Ok(Entry {
        idx: r.try_get(0)?,
        seq: r.try_get(1)?,
        leaf_id: r.try_get(2)?,
    })
}

fn pg_node(r: &PgRow, _: &mut Vec<u8>) -> Result<TreeNode, StoreError> {
    Ok(TreeNode {
        id: r.try_get(0)?,
        hash: hash32(Some(r.try_get::<&[u8], _>(1)?)).flatten(),
    })
}

fn pg_event(r: &PgRow, buf: &mut Vec<u8>) -> Result<EventLeaf, StoreError> {
    let seq: i64 = r.try_get(0)?;
    let fields = EventFields {
        at: r.try_get(1)?,
        actor_id: r.try_get(2)?,
        actor_role: r.try_get(3)?,
        action: r.try_get(4)?,
        target_user_id: r.try_get(5)?,
        patient_id: r.try_get(6)?,
        outcome: outcome(r.try_get(7)?, seq)?,
        client_addr: r.try_get(8)?,
        request_id: r.try_get(9)?,
        detail: r.try_get(10)?,
    };
    event_leaf(seq, &fields, r.try_get(11)?, buf)
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
    sql: &'static str,
    binds: Vec<i64>,
    row: fn(&rusqlite::Row<'_>, &mut Vec<u8>) -> Result<T, StoreError>,
) -> Scan<T> {
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // rusqlite numbers parameters ?1, ?2; the shared SQL text uses PostgreSQL's $1, $2.
        let mut stmt = conn.prepare(&sql.replace('$', "?"))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(binds))?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut buf = Vec::with_capacity(256);
        while let Some(r) = rows.next()? {
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
