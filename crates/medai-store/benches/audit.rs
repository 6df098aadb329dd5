//! Benchmark (not a timed test) of the tamper-evident audit log, printing figures:
//! - appends per second with 1 writer and with 32 concurrent writers, each append committed
//!   (durable) before it is counted: through the group-committing `Appender`, and with each
//!   writer running its own transaction (the path of requests that change data);
//! - integration (placing events in the Merkle tree) per second;
//! - verification per second over `MEDAI_BENCH_EVENTS` events (default 1,000,000): the whole
//!   `audit_log::verify` (database reads, leaf recomputation, tree) and the in-memory verifier.
//!
//! SQLite always; PostgreSQL when `MEDAI_TEST_POSTGRES_URL` is set.
//! `cargo bench -p medai-store --bench audit`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark harness"
)]

use medai_audit::verify::Verifier;
use medai_audit::{leaf_hash, CheckpointSigner, CheckpointVerifier};
use medai_core::audit::{AuditEvent, Outcome};
use medai_store::audit_log::{self, Appender, VerifyFrom};
use medai_store::testkit::{backends, migrated_store};
use medai_store::{audit, Store};
use std::sync::Arc;
use std::time::Instant;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ev(i: usize) -> AuditEvent {
    AuditEvent::new(1_700_000_000 + i as i64, "patient.read", Outcome::Success)
        .actor(
            format!("0193a1b2-0000-7000-8000-{:012}", i % 500),
            "clinician",
        )
        .patient(format!("0193a1b2-1111-7000-8000-{:012}", i % 5000))
        .origin(Some("10.1.2.3".into()), Some(format!("req-{i}")))
        .detail(&serde_json::json!({ "results": 1 }))
}

async fn appender_rate(store: &Store, writers: usize, per_writer: usize) -> f64 {
    let appender = Appender::start(store.clone(), Arc::new(tokio::sync::Notify::new()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let a = appender.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    a.append(ev(w * per_writer + i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (writers * per_writer) as f64 / start.elapsed().as_secs_f64()
}

async fn transaction_rate(store: &Store, writers: usize, per_writer: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let mut tx = s.begin().await.unwrap();
                    audit::append(&mut tx, &ev(w * per_writer + i))
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (writers * per_writer) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let events = env_num("MEDAI_BENCH_EVENTS", 1_000_000);
    let appends = env_num("MEDAI_BENCH_APPENDS", 20_000);
    println!("audit log benchmark: {events} events for verification, {appends} per append run");

    // The verifier alone, in memory.
    let all: Vec<AuditEvent> = (0..events).map(ev).collect();
    let leaves: Vec<_> = all.iter().map(leaf_hash).collect();
    let start = Instant::now();
    let mut v = Verifier::new(Vec::new());
    for (i, e) in all.iter().enumerate() {
        v.push(i as u64, i as i64, e, &leaves[i]);
    }
    let r = v.finish();
    assert!(r.ok());
    println!(
        "in-memory verifier: {events} events in {:.2}s = {:.0} events/s",
        start.elapsed().as_secs_f64(),
        events as f64 / start.elapsed().as_secs_f64()
    );
    drop(leaves);

    for kind in backends() {
        println!("\n== {kind:?} ==");
        let (store, _db) = migrated_store(kind).await.unwrap();
        let single = appender_rate(&store, 1, appends / 10).await;
        println!("appender, 1 writer:            {single:>9.0} appends/s (each committed before the next)");
        let many = appender_rate(&store, 32, appends / 32).await;
        println!("appender, 32 writers:          {many:>9.0} appends/s (group commit)");
        let tx1 = transaction_rate(&store, 1, appends / 10).await;
        println!("own transaction, 1 writer:     {tx1:>9.0} appends/s");
        let tx32 = transaction_rate(&store, 32, appends / 32).await;
        println!("own transaction, 32 writers:   {tx32:>9.0} appends/s");

        // Fill to `events` with bulk appends, then integrate and verify.
        let have = {
            let mut c = store.pool().acquire().await.unwrap();
            let n: i64 = sqlx_count(&mut c).await;
            n as usize
        };
        let fill = Instant::now();
        for chunk in all[..events.saturating_sub(have)].chunks(5000) {
            let mut tx = store.begin().await.unwrap();
            audit::append_many(&mut tx, chunk).await.unwrap();
            tx.commit().await.unwrap();
        }
        println!(
            "bulk fill to {events}: {:.1}s",
            fill.elapsed().as_secs_f64()
        );
        let start = Instant::now();
        let placed = audit_log::integrate_all(&store).await.unwrap();
        println!(
            "integration: {placed} events in {:.2}s = {:.0} events/s",
            start.elapsed().as_secs_f64(),
            placed as f64 / start.elapsed().as_secs_f64()
        );
        let signer = CheckpointSigner::generate("bench/audit").unwrap();
        audit_log::checkpoint(&store, &signer, 0).await.unwrap();
        let key = CheckpointVerifier::new(signer.verifier_key()).unwrap();
        let start = Instant::now();
        let r = audit_log::verify(&store, &[key], VerifyFrom::default(), Vec::new())
            .await
            .unwrap();
        assert!(r.ok(), "{:?}", r.findings);
        println!(
            "verify (database reads + leaves + tree + checkpoints): {} events in {:.2}s = {:.0} events/s",
            r.events_checked,
            start.elapsed().as_secs_f64(),
            r.events_checked as f64 / start.elapsed().as_secs_f64()
        );
    }
}

async fn sqlx_count(c: &mut medai_store::AnyConnection) -> i64 {
    audit_log::pending_count(c).await.unwrap() as i64
        + audit_log::tree_size(c).await.unwrap() as i64
}
