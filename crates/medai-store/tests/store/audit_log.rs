//! The Merkle audit log on each backend: integration, checkpoints, proofs, append-only
//! enforcement, and tampering done directly in the database, each kind detected by verify.

use medai_audit::proof::{verify_document, Verified};
use medai_audit::verify::{Finding, Report};
use medai_audit::{CheckpointSigner, CheckpointVerifier};
use medai_core::audit::{AuditEvent, Outcome};
use medai_store::audit_log::{self, VerifyFrom};
use medai_store::testkit::{backends, migrated_store};
use medai_store::{audit, DatabaseKind, Store};

fn ev(i: i64) -> AuditEvent {
    AuditEvent::new(1_700_000_000 + i, "patient.read", Outcome::Success)
        .actor(format!("user-{}", i % 7), "clinician")
        .patient(format!("patient-{}", i % 11))
}

async fn append_n(store: &Store, from: i64, n: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    for i in from..from + n {
        let mut tx = store.begin().await.unwrap();
        seqs.push(audit::append(&mut tx, &ev(i)).await.unwrap());
        tx.commit().await.unwrap();
    }
    seqs
}

/// 40 events with checkpoints at 25 and 40; returns the signer, the exported notes and seqs.
async fn seeded(store: &Store) -> (CheckpointSigner, Vec<(String, String)>, Vec<i64>) {
    let signer = CheckpointSigner::generate("medai.test/audit").unwrap();
    let mut seqs = append_n(store, 0, 25).await;
    assert_eq!(audit_log::integrate_all(store).await.unwrap(), 25);
    let a = audit_log::checkpoint(store, &signer, 1)
        .await
        .unwrap()
        .unwrap();
    seqs.extend(append_n(store, 25, 15).await);
    audit_log::integrate_all(store).await.unwrap();
    let b = audit_log::checkpoint(store, &signer, 2)
        .await
        .unwrap()
        .unwrap();
    assert!(
        audit_log::checkpoint(store, &signer, 3)
            .await
            .unwrap()
            .is_none(),
        "no growth, no checkpoint"
    );
    let exported = vec![
        ("cp-25.txt".to_string(), a.note),
        ("cp-40.txt".to_string(), b.note),
    ];
    (signer, exported, seqs)
}

async fn verify(store: &Store, signer: &CheckpointSigner, extra: &[(String, String)]) -> Report {
    let key = CheckpointVerifier::new(signer.verifier_key()).unwrap();
    audit_log::verify(store, &[key], VerifyFrom::default(), extra.to_vec())
        .await
        .unwrap()
}

/// Runs statements the way an attacker with database access would: triggers off.
async fn tamper(store: &Store, kind: DatabaseKind, sql: &[String]) {
    if kind == DatabaseKind::Sqlite {
        // Outside a transaction, as an attacker with the file would.
        let mut c = store.pool().acquire().await.unwrap();
        medai_store::testkit::execute(&mut c, "PRAGMA foreign_keys = OFF")
            .await
            .unwrap();
    }
    let mut tx = store.begin().await.unwrap();
    match kind {
        DatabaseKind::Sqlite => {
            for t in [
                "audit_events",
                "audit_log_entries",
                "audit_tree_hashes",
                "audit_checkpoints",
            ] {
                for op in ["update", "delete"] {
                    medai_store::testkit::execute(
                        &mut tx,
                        &format!("DROP TRIGGER IF EXISTS {t}_no_{op}"),
                    )
                    .await
                    .unwrap();
                }
            }
        }
        DatabaseKind::Postgres => {
            medai_store::testkit::execute(&mut tx, "SET LOCAL session_replication_role = replica")
                .await
                .unwrap();
        }
    }
    for s in sql {
        medai_store::testkit::execute(&mut tx, s).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn idx_of(store: &Store, seq: i64) -> u64 {
    let mut c = store.pool().acquire().await.unwrap();
    audit_log::entry_for_seq(&mut c, seq)
        .await
        .unwrap()
        .unwrap()
        .0
}

#[tokio::test]
async fn honest_log_verifies_and_proofs_check_offline() {
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, seqs) = seeded(&store).await;
        let r = verify(&store, &signer, &exported).await;
        assert!(r.ok(), "{kind:?}: {:?}", r.findings);
        assert_eq!((r.events_checked, r.tree_size), (40, 40));
        let from = audit_log::verify(
            &store,
            &[CheckpointVerifier::new(signer.verifier_key()).unwrap()],
            VerifyFrom {
                seq: Some(seqs[30]),
            },
            vec![],
        )
        .await
        .unwrap();
        assert!(from.ok());
        assert_eq!(from.events_checked, 10);

        let key = CheckpointVerifier::new(signer.verifier_key()).unwrap();
        let mut c = store.pool().acquire().await.unwrap();
        // Event 3 is proved against the first checkpoint that covers it (25); event 30 against 40.
        for (seq, size) in [(seqs[3], 25), (seqs[30], 40)] {
            let p = audit_log::inclusion_proof(&mut c, seq, None).await.unwrap();
            let doc = serde_json::to_string_pretty(&p).unwrap();
            match verify_document(&doc, &key).unwrap() {
                Verified::Inclusion { checkpoint, .. } => assert_eq!(checkpoint.size, size),
                other => panic!("{other:?}"),
            }
        }
        let p = audit_log::inclusion_proof(&mut c, seqs[3], Some(40))
            .await
            .unwrap();
        verify_document(&serde_json::to_string(&p).unwrap(), &key).unwrap();
        let cons = audit_log::consistency_proof(&mut c, 25, 40).await.unwrap();
        assert!(matches!(
            verify_document(&serde_json::to_string(&cons).unwrap(), &key).unwrap(),
            Verified::Consistency { .. }
        ));
        assert!(audit_log::consistency_proof(&mut c, 40, 25).await.is_err());
        assert!(audit_log::inclusion_proof(&mut c, 999_999, None)
            .await
            .is_err());
        assert!(
            audit_log::inclusion_proof(&mut c, seqs[3], Some(30))
                .await
                .is_err(),
            "no checkpoint of size 30"
        );
    }
}

#[tokio::test]
async fn the_database_refuses_update_and_delete_of_log_rows() {
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (_, _, seqs) = seeded(&store).await;
        for sql in [
            format!(
                "UPDATE audit_events SET outcome = 'denied' WHERE seq = {}",
                seqs[0]
            ),
            format!("DELETE FROM audit_events WHERE seq = {}", seqs[39]),
            "UPDATE audit_log_entries SET seq = seq WHERE idx = 0".to_string(),
            "DELETE FROM audit_log_entries WHERE idx = 39".to_string(),
            "UPDATE audit_tree_hashes SET hash = hash WHERE id = 0".to_string(),
            "DELETE FROM audit_tree_hashes".to_string(),
            "DELETE FROM audit_checkpoints".to_string(),
        ] {
            let mut tx = store.begin().await.unwrap();
            let err = medai_store::testkit::execute(&mut tx, &sql)
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("append-only"),
                "{kind:?} {sql}: {err}"
            );
        }
        if kind == DatabaseKind::Postgres {
            let mut tx = store.begin().await.unwrap();
            let err = medai_store::testkit::execute(&mut tx, "TRUNCATE audit_events CASCADE")
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
            drop(tx);
            // The application role: may append, may not change or delete, even with the
            // triggers out of the way.
            let mut tx = store.begin().await.unwrap();
            medai_store::testkit::execute(&mut tx, "SET LOCAL ROLE medai_app")
                .await
                .unwrap();
            audit::append(&mut tx, &ev(100)).await.unwrap();
            tx.commit().await.unwrap();
            for sql in [
                "UPDATE audit_events SET outcome = 'denied'",
                "DELETE FROM audit_log_entries",
                "DELETE FROM audit_checkpoints",
            ] {
                let mut tx = store.begin().await.unwrap();
                medai_store::testkit::execute(&mut tx, "SET LOCAL ROLE medai_app")
                    .await
                    .unwrap();
                let err = medai_store::testkit::execute(&mut tx, sql)
                    .await
                    .unwrap_err();
                assert!(
                    err.to_string().contains("permission denied"),
                    "{sql}: {err}"
                );
            }
        }
    }
}

#[tokio::test]
async fn each_kind_of_tampering_is_detected() {
    for kind in backends() {
        // Edited: one event's outcome changed in place.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, seqs) = seeded(&store).await;
        let victim = seqs[12];
        tamper(
            &store,
            kind,
            &[format!(
                "UPDATE audit_events SET outcome = 'denied' WHERE seq = {victim}"
            )],
        )
        .await;
        let r = verify(&store, &signer, &exported).await;
        let idx = idx_of(&store, victim).await;
        assert_eq!(
            r.findings[0],
            Finding::LeafMismatch {
                index: idx,
                seq: victim
            },
            "{kind:?}"
        );

        // Edited with the recorded leaf hash recomputed to match: the tree still has the old leaf.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, seqs) = seeded(&store).await;
        let mut changed = ev(20);
        changed.action = "patient.update".into();
        let leaf = hex::encode(medai_audit::leaf_hash(&changed).0);
        let lit = match kind {
            DatabaseKind::Sqlite => format!("X'{leaf}'"),
            DatabaseKind::Postgres => format!("'\\x{leaf}'::bytea"),
        };
        tamper(
            &store,
            kind,
            &[format!(
            "UPDATE audit_events SET action = 'patient.update', leaf_hash = {lit} WHERE seq = {}",
            seqs[20]
        )],
        )
        .await;
        let r = verify(&store, &signer, &exported).await;
        assert_eq!(
            r.findings[0],
            Finding::LeafMismatch {
                index: 20,
                seq: seqs[20]
            },
            "{kind:?}"
        );

        // Reordered: two events' contents swapped (with their recorded hashes).
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, seqs) = seeded(&store).await;
        let (a, b) = (seqs[5], seqs[6]);
        tamper(&store, kind, &[
            format!("UPDATE audit_events SET at = at + 1000000 WHERE seq = {a}"),
            format!("UPDATE audit_events SET at = (SELECT at FROM audit_events WHERE seq = {a}) - 1000000, \
                     actor_id = (SELECT actor_id FROM audit_events WHERE seq = {a}), \
                     patient_id = (SELECT patient_id FROM audit_events WHERE seq = {a}), \
                     leaf_hash = (SELECT leaf_hash FROM audit_events WHERE seq = {a}) WHERE seq = {b}"),
        ])
        .await;
        let r = verify(&store, &signer, &exported).await;
        assert!(
            matches!(r.findings[0], Finding::LeafMismatch { index: 5, .. }),
            "{kind:?} {:?}",
            r.findings
        );
        assert!(r
            .findings
            .contains(&Finding::LeafMismatch { index: 6, seq: b }));

        // Deleted: one event and its tree position gone.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, seqs) = seeded(&store).await;
        tamper(
            &store,
            kind,
            &[
                format!("DELETE FROM audit_log_entries WHERE seq = {}", seqs[9]),
                format!("DELETE FROM audit_events WHERE seq = {}", seqs[9]),
            ],
        )
        .await;
        let r = verify(&store, &signer, &exported).await;
        assert_eq!(
            r.findings[0],
            Finding::Missing {
                index: 9,
                next_present: 10
            },
            "{kind:?}"
        );

        // Deleted event row only (its tree position left): reported, and the rest still checked.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, seqs) = seeded(&store).await;
        tamper(
            &store,
            kind,
            &[
                format!("DELETE FROM audit_pending WHERE seq = {}", seqs[9]),
                format!("DELETE FROM audit_events WHERE seq = {}", seqs[9]),
            ],
        )
        .await;
        let r = verify(&store, &signer, &exported).await;
        assert_eq!(
            r.findings,
            vec![Finding::Missing {
                index: 9,
                next_present: 10
            }],
            "{kind:?}"
        );

        // Truncated: the last 10 events, their tree nodes and the checkpoints that covered them.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, seqs) = seeded(&store).await;
        tamper(
            &store,
            kind,
            &[
                "DELETE FROM audit_log_entries WHERE idx >= 30".into(),
                format!("DELETE FROM audit_events WHERE seq >= {}", seqs[30]),
                "DELETE FROM audit_tree_hashes WHERE id >= 58".into(),
                "DELETE FROM audit_checkpoints WHERE tree_size > 25".into(),
            ],
        )
        .await;
        let db_only = verify(&store, &signer, &[]).await;
        assert!(
            db_only.ok(),
            "the database alone is self-consistent after a clean truncation"
        );
        let r = verify(&store, &signer, &exported).await;
        assert_eq!(
            r.findings,
            vec![Finding::Truncated {
                checkpoint_size: 40,
                source: "cp-40.txt".into(),
                log_size: 30
            }],
            "{kind:?}"
        );

        // Rewritten whole log: everything replaced and re-integrated, checkpoints forged with
        // another key; the exported checkpoints and the real key expose it.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, _) = seeded(&store).await;
        tamper(
            &store,
            kind,
            &[
                "DELETE FROM audit_checkpoints".into(),
                "DELETE FROM audit_tree_hashes".into(),
                "DELETE FROM audit_log_entries".into(),
                "DELETE FROM audit_pending".into(),
                "DELETE FROM audit_events".into(),
            ],
        )
        .await;
        let mut forged_log = append_n(&store, 1, 40).await;
        forged_log.clear();
        audit_log::integrate_all(&store).await.unwrap();
        let evil = CheckpointSigner::generate("medai.test/audit").unwrap();
        audit_log::checkpoint(&store, &evil, 9).await.unwrap();
        let r = verify(&store, &signer, &exported).await;
        assert!(
            matches!(&r.findings[0], Finding::BadCheckpoint { .. }),
            "{kind:?} {:?}",
            r.findings
        );
        assert!(r.findings.iter().any(|f| matches!(f, Finding::RootMismatch { size: 25, source, last_good_size: 0 } if source == "cp-25.txt")));
        assert!(r
            .findings
            .iter()
            .any(|f| matches!(f, Finding::RootMismatch { size: 40, .. })));
    }
}

#[tokio::test]
async fn the_stored_tree_and_unplaced_events_are_checked_and_out_of_order_positions_verify() {
    for kind in backends() {
        // An interior node of the stored tree (used for proofs) changed: the events are intact,
        // so only the stored tree is reported, at the position whose leaf completes that node.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, _) = seeded(&store).await;
        // Level 1, index 3: the parent of leaves 6 and 7.
        let node = medai_audit::tree::stored_hash_index(1, 3);
        let junk = match kind {
            DatabaseKind::Sqlite => format!("X'{}'", "ab".repeat(32)),
            DatabaseKind::Postgres => format!("'\\x{}'::bytea", "ab".repeat(32)),
        };
        tamper(
            &store,
            kind,
            &[format!(
                "UPDATE audit_tree_hashes SET hash = {junk} WHERE id = {node}"
            )],
        )
        .await;
        let r = verify(&store, &signer, &exported).await;
        assert_eq!(
            r.findings,
            vec![Finding::StoredTreeMismatch { size: 8 }],
            "{kind:?}"
        );

        // A stored leaf hash that is not 32 bytes is a finding, not a crash.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, _) = seeded(&store).await;
        let leaf = medai_audit::tree::stored_hash_index(0, 30);
        tamper(
            &store,
            kind,
            &[format!(
                "UPDATE audit_tree_hashes SET hash = {} WHERE id = {leaf}",
                match kind {
                    DatabaseKind::Sqlite => "X'00'",
                    DatabaseKind::Postgres => "'\\x00'::bytea",
                }
            )],
        )
        .await;
        let r = verify(&store, &signer, &exported).await;
        assert_eq!(
            r.findings,
            vec![Finding::StoredTreeMismatch { size: 31 }],
            "{kind:?}"
        );

        // An event slipped in with its queue entry removed: stored, never placed.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, _) = seeded(&store).await;
        let sneaked = append_n(&store, 100, 1).await[0];
        tamper(
            &store,
            kind,
            &[format!("DELETE FROM audit_pending WHERE seq = {sneaked}")],
        )
        .await;
        // Events appended after it are queued, not unplaced.
        append_n(&store, 101, 3).await;
        let r = verify(&store, &signer, &exported).await;
        assert_eq!(
            r.findings,
            vec![Finding::NotInTree { seq: sneaked }],
            "{kind:?}"
        );

        // Positions out of sequence order (a transaction that committed late): event A is
        // appended before B but placed after it. Verification matches each position to its
        // event whatever the order.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, _) = seeded(&store).await;
        let a = append_n(&store, 200, 1).await[0];
        tamper(
            &store,
            kind,
            &[format!("DELETE FROM audit_pending WHERE seq = {a}")],
        )
        .await;
        let b = append_n(&store, 201, 2).await;
        audit_log::integrate_all(&store).await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
        medai_store::testkit::execute(
            &mut c,
            &format!("INSERT INTO audit_pending (seq) VALUES ({a})"),
        )
        .await
        .unwrap();
        drop(c);
        audit_log::integrate_all(&store).await.unwrap();
        assert!(idx_of(&store, a).await > idx_of(&store, b[1]).await);
        audit_log::checkpoint(&store, &signer, 5).await.unwrap();
        let r = verify(&store, &signer, &exported).await;
        assert!(r.ok(), "{kind:?} {:?}", r.findings);
        assert_eq!(r.events_checked, 43, "{kind:?}");
    }
}

#[tokio::test]
async fn an_honest_log_whose_rows_moved_on_disk_still_verifies() {
    for kind in backends() {
        // Rows rewritten with the values they had (a restore, a table rewrite): PostgreSQL puts
        // the new versions elsewhere in the table, so a table scan no longer returns them in key
        // order. Verification must neither report tampering nor miss any.
        let (store, _db) = migrated_store(kind).await.unwrap();
        let (signer, exported, _) = seeded(&store).await;
        let before = verify(&store, &signer, &exported).await;
        assert!(before.ok(), "{kind:?} {:?}", before.findings);
        tamper(
            &store,
            kind,
            &[
                "UPDATE audit_events SET detail = detail WHERE seq % 3 = 0".to_string(),
                "UPDATE audit_log_entries SET seq = seq WHERE idx % 4 = 1".to_string(),
                "UPDATE audit_tree_hashes SET hash = hash WHERE id % 5 = 2".to_string(),
            ],
        )
        .await;
        if kind == DatabaseKind::Postgres {
            // The test is only worth its name if the physical order really changed.
            let mut c = store.pool().acquire().await.unwrap();
            medai_store::testkit::execute(&mut c, "SET enable_indexscan = off")
                .await
                .unwrap();
            medai_store::testkit::execute(&mut c, "SET enable_bitmapscan = off")
                .await
                .unwrap();
            for (table, key) in [
                ("audit_events", "seq"),
                ("audit_log_entries", "idx"),
                ("audit_tree_hashes", "id"),
            ] {
                let keys: Vec<i64> = sqlx::query_scalar(&format!("SELECT {key} FROM {table}"))
                    .fetch_all(&mut *c)
                    .await
                    .unwrap();
                assert!(
                    keys.windows(2).any(|w| w[0] > w[1]),
                    "{table} is still in key order on disk"
                );
            }
        }
        let after = verify(&store, &signer, &exported).await;
        assert!(after.ok(), "{kind:?} {:?}", after.findings);
        assert_eq!(after.events_checked, before.events_checked, "{kind:?}");
        assert_eq!(after.root, before.root, "{kind:?}");

        // And tampering in a moved table is still found.
        tamper(
            &store,
            kind,
            &["UPDATE audit_events SET action = 'patient.export' WHERE seq = 9".to_string()],
        )
        .await;
        let r = verify(&store, &signer, &exported).await;
        assert!(
            r.findings
                .iter()
                .any(|f| matches!(f, Finding::LeafMismatch { seq: 9, .. })),
            "{kind:?} {:?}",
            r.findings
        );
    }
}

#[tokio::test]
async fn concurrent_writers_in_transactions_and_through_the_appender_all_land_in_the_tree() {
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let appender = audit_log::Appender::start(store.clone(), notify);
        let mut tasks = Vec::new();
        for w in 0..16i64 {
            let (store, appender) = (store.clone(), appender.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    if w % 2 == 0 {
                        appender.append(ev(w * 1000 + i)).await.unwrap();
                    } else {
                        let mut tx = store.begin().await.unwrap();
                        audit::append(&mut tx, &ev(w * 1000 + i)).await.unwrap();
                        tx.commit().await.unwrap();
                    }
                    if i % 10 == 0 {
                        audit_log::integrate(&store, 100).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        audit_log::integrate_all(&store).await.unwrap();
        let signer = CheckpointSigner::generate("medai.test/audit").unwrap();
        audit_log::checkpoint(&store, &signer, 1)
            .await
            .unwrap()
            .unwrap();
        let r = verify(&store, &signer, &[]).await;
        assert!(r.ok(), "{kind:?} {:?}", r.findings);
        assert_eq!(r.tree_size, 400, "{kind:?}");
        let mut c = store.pool().acquire().await.unwrap();
        assert_eq!(audit_log::pending_count(&mut c).await.unwrap(), 0);
    }
}
