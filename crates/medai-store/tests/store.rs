//! Storage tests, each run on SQLite and (when `MEDAI_TEST_POSTGRES_URL` is set) PostgreSQL,
//! every test in its own database.
#![allow(clippy::unwrap_used, clippy::panic, reason = "integration test")]

#[path = "support/tls_redis.rs"]
mod tls_redis;

use medai_core::audit::{AuditEvent, Outcome};
use medai_core::patient::{Demographics, Sex};
use medai_core::Role;
use medai_store::ephemeral::{Ephemeral, SessionRecord};
use medai_store::redis_tls::RedisCa;
use medai_store::testkit::{
    backends, fresh_database, migrated_store, redis_url, unique_prefix, TestDatabase,
};
use medai_store::{
    audit, break_glass, care_teams, enrolments, new_id, patients, phi_keys, tokens, users,
    DatabaseKind, SchemaStatus, Store, StoreError,
};
use time::macros::date;

fn demo(mrn: &str, given: &str, family: &str) -> Demographics {
    Demographics {
        mrn: mrn.into(),
        given_name: given.into(),
        family_name: family.into(),
        date_of_birth: date!(1960 - 05 - 17),
        sex: Sex::Female,
    }
}

/// A migrated store with its first PHI keys (a fresh master key), and a connection to it.
async fn keyed_store(
    kind: DatabaseKind,
) -> (
    Store,
    TestDatabase,
    sqlx::pool::PoolConnection<sqlx::Any>,
    phi_keys::PhiCipher,
) {
    let (store, db) = migrated_store(kind).await.unwrap();
    let mut c = store.pool().acquire().await.unwrap();
    let phi = phi_keys::load_or_init(&mut c, &medai_crypto::MasterKey::generate(), 1)
        .await
        .unwrap();
    (store, db, c, phi)
}

#[tokio::test]
async fn schema_is_fresh_then_current_and_detects_behind_and_ahead() {
    for kind in backends() {
        let db = fresh_database(kind).await.unwrap();
        let store = Store::connect(&db.url).await.unwrap();
        assert_eq!(
            store.schema_status().await.unwrap(),
            SchemaStatus::Fresh,
            "{kind:?}"
        );
        let applied = store.migrate().await.unwrap();
        assert_eq!(applied, store.known_migrations());
        assert_eq!(store.schema_status().await.unwrap(), SchemaStatus::Current);
        assert!(
            store.migrate().await.unwrap().is_empty(),
            "second migrate is a no-op"
        );
        assert!(!store.ensure_schema_for_serve().await.unwrap());

        // A migration from a newer release: ahead, and serve refuses naming the problem.
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99991231000000, 'future', TRUE, $1, 0)",
        )
        .bind(vec![0u8; 48])
        .execute(store.pool())
        .await
        .unwrap();
        let st = store.schema_status().await.unwrap();
        assert_eq!(
            st,
            SchemaStatus::Ahead {
                unknown: vec![99991231000000]
            }
        );
        let err = store
            .ensure_schema_for_serve()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("ahead"), "{err}");
        assert!(
            store.migrate().await.is_err(),
            "migrate refuses a newer schema"
        );

        // Remove the future one and forget ours: behind, and the advice names `medai migrate`.
        sqlx::query("DELETE FROM _sqlx_migrations")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (1, 'old', TRUE, $1, 0)",
        )
        .bind(vec![0u8; 48])
        .execute(store.pool())
        .await
        .unwrap();
        let st = store.schema_status().await.unwrap();
        assert!(
            matches!(st, SchemaStatus::Ahead { .. }),
            "unknown old version counts as foreign: {st:?}"
        );
        sqlx::query("DELETE FROM _sqlx_migrations")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(store.schema_status().await.unwrap(), SchemaStatus::Fresh);
        store.close().await;
    }
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys() {
    let (store, _db) = migrated_store(DatabaseKind::Sqlite).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
}

#[tokio::test]
async fn behind_schema_is_refused_with_the_command_to_run() {
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let v = store.known_migrations()[0];
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(v)
            .execute(store.pool())
            .await
            .unwrap();
        // Another, known migration must remain for "behind" (not "fresh"); with a single
        // migration the table is empty and the state is fresh.
        let st = store.schema_status().await.unwrap();
        if store.known_migrations().len() == 1 {
            assert_eq!(st, SchemaStatus::Fresh);
        } else {
            assert!(matches!(st, SchemaStatus::Behind { .. }));
            assert!(st.advice().unwrap().contains("medai migrate"));
        }
        let behind = SchemaStatus::Behind { pending: vec![v] };
        assert!(behind.advice().unwrap().contains("run `medai migrate`"));
    }
}

#[tokio::test]
async fn users_credentials_totp_replay_and_recovery_codes() {
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
        let id = new_id();
        users::insert(&mut c, &id, "alice", Role::Clinician, 100)
            .await
            .unwrap();
        let dup = users::insert(&mut c, &new_id(), "alice", Role::Nurse, 100).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict("username"))),
            "{kind:?}: {dup:?}"
        );

        let u = users::by_username(&mut c, "alice").await.unwrap().unwrap();
        assert_eq!(u.role, Role::Clinician);
        assert!(!u.can_log_in(), "no credentials yet");
        users::set_credentials(&mut c, &id, "$argon2id$x", &[1, 2, 3], 200)
            .await
            .unwrap();
        let u = users::by_id(&mut c, &id).await.unwrap().unwrap();
        assert!(u.can_log_in());
        assert_eq!(u.totp_secret.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(u.session_generation, 1);

        assert!(users::consume_totp_step(&mut c, &id, 10).await.unwrap());
        assert!(
            !users::consume_totp_step(&mut c, &id, 10).await.unwrap(),
            "replay"
        );
        assert!(
            !users::consume_totp_step(&mut c, &id, 9).await.unwrap(),
            "older step"
        );
        assert!(users::consume_totp_step(&mut c, &id, 11).await.unwrap());

        let hashes: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
        users::replace_recovery_codes(&mut c, &id, &hashes)
            .await
            .unwrap();
        assert!(users::use_recovery_code(&mut c, &id, "h3", 300)
            .await
            .unwrap());
        assert!(
            !users::use_recovery_code(&mut c, &id, "h3", 301)
                .await
                .unwrap(),
            "single use"
        );
        assert!(!users::use_recovery_code(&mut c, &id, "nope", 301)
            .await
            .unwrap());
        assert_eq!(users::recovery_codes_left(&mut c, &id).await.unwrap(), 9);

        users::reset_mfa(&mut c, &id, 400).await.unwrap();
        let u = users::by_id(&mut c, &id).await.unwrap().unwrap();
        assert!(u.totp_secret.is_none() && !u.can_log_in());
        assert_eq!(u.session_generation, 2);
        assert_eq!(users::recovery_codes_left(&mut c, &id).await.unwrap(), 0);

        users::set_password(&mut c, &id, "$argon2id$y", 500)
            .await
            .unwrap();
        users::disable(&mut c, &id, 600).await.unwrap();
        assert!(matches!(
            users::disable(&mut c, &id, 601).await,
            Err(StoreError::NotFound(_))
        ));
        let u = users::by_id(&mut c, &id).await.unwrap().unwrap();
        assert_eq!(u.disabled_at, Some(600));
        assert_eq!(u.session_generation, 4);
        assert_eq!(
            users::count_enabled_with_role(&mut c, Role::Clinician)
                .await
                .unwrap(),
            0
        );
        assert!(users::by_id(&mut c, "missing").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn patients_search_and_care_team_scope() {
    for kind in backends() {
        let (_store, _db, mut c, phi) = keyed_store(kind).await;
        let (alice, bob) = (new_id(), new_id());
        users::insert(&mut c, &alice, "alice", Role::Clinician, 1)
            .await
            .unwrap();
        users::insert(&mut c, &bob, "bob", Role::Nurse, 1)
            .await
            .unwrap();
        let (cardio, onco) = (new_id(), new_id());
        care_teams::insert(&mut c, &cardio, "cardiology", 1)
            .await
            .unwrap();
        care_teams::insert(&mut c, &onco, "oncology", 1)
            .await
            .unwrap();
        assert!(matches!(
            care_teams::insert(&mut c, &new_id(), "oncology", 1).await,
            Err(StoreError::Conflict(_))
        ));
        care_teams::add_member(&mut c, &cardio, &alice)
            .await
            .unwrap();
        care_teams::add_member(&mut c, &cardio, &alice)
            .await
            .unwrap();
        care_teams::add_member(&mut c, &onco, &bob).await.unwrap();
        assert_eq!(
            care_teams::members(&mut c, &cardio).await.unwrap(),
            vec![alice.clone()]
        );
        assert_eq!(
            care_teams::of_user(&mut c, &bob).await.unwrap()[0].name,
            "oncology"
        );
        assert_eq!(
            care_teams::find(&mut c, "cardiology")
                .await
                .unwrap()
                .unwrap()
                .id,
            cardio
        );

        let (p1, p2, p3) = (new_id(), new_id(), new_id());
        patients::insert(&mut c, &phi, &p1, &demo("MRN-1", "Ana", "García"), 10)
            .await
            .unwrap();
        patients::insert(&mut c, &phi, &p2, &demo("MRN-2", "Ben", "O'Neil"), 10)
            .await
            .unwrap();
        let mut d3 = demo("MRN-3", "Cara", "100% Real");
        d3.sex = Sex::Male;
        d3.date_of_birth = date!(1990 - 01 - 02);
        patients::insert(&mut c, &phi, &p3, &d3, 10).await.unwrap();
        assert!(matches!(
            patients::insert(&mut c, &phi, &new_id(), &demo("MRN-1", "X", "Y"), 10).await,
            Err(StoreError::Conflict("mrn"))
        ));
        patients::set_care_teams(&mut c, &p1, std::slice::from_ref(&cardio))
            .await
            .unwrap();
        patients::set_care_teams(&mut c, &p2, &[cardio.clone(), onco.clone()])
            .await
            .unwrap();

        let search = |s: patients::Search| s;
        let all = patients::Search {
            limit: 50,
            ..Default::default()
        };
        let ids = |v: Vec<patients::Patient>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(patients::search(&mut c, &phi, &all).await.unwrap().len(), 3);
        let by_name = search(patients::Search {
            name: Some("gARc".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &phi, &by_name).await.unwrap()),
            vec![p1.clone()],
            "{kind:?}"
        );
        let full = search(patients::Search {
            name: Some("ben o'n".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &phi, &full).await.unwrap()),
            vec![p2.clone()]
        );
        let pct = search(patients::Search {
            name: Some("%".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &phi, &pct).await.unwrap()),
            vec![p3.clone()],
            "% is literal"
        );
        let dob = search(patients::Search {
            date_of_birth: Some(date!(1990 - 01 - 02)),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &phi, &dob).await.unwrap()),
            vec![p3.clone()]
        );
        let sex = search(patients::Search {
            sex: Some(Sex::Female),
            ..all.clone()
        });
        assert_eq!(patients::search(&mut c, &phi, &sex).await.unwrap().len(), 2);
        let mrn = search(patients::Search {
            mrn: Some("MRN-2".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &phi, &mrn).await.unwrap()),
            vec![p2.clone()]
        );

        let alices = search(patients::Search {
            care_team_member: Some(alice.clone()),
            ..all.clone()
        });
        let mut got = ids(patients::search(&mut c, &phi, &alices).await.unwrap());
        got.sort();
        let mut want = vec![p1.clone(), p2.clone()];
        want.sort();
        assert_eq!(got, want);
        let bobs = search(patients::Search {
            care_team_member: Some(bob.clone()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &phi, &bobs).await.unwrap()),
            vec![p2.clone()]
        );
        let page = search(patients::Search {
            limit: 1,
            offset: 1,
            ..all.clone()
        });
        assert_eq!(
            patients::search(&mut c, &phi, &page).await.unwrap().len(),
            1
        );

        assert!(patients::on_users_care_team(&mut c, &alice, &p1)
            .await
            .unwrap());
        assert!(!patients::on_users_care_team(&mut c, &bob, &p1)
            .await
            .unwrap());
        assert!(!patients::on_users_care_team(&mut c, &alice, &p3)
            .await
            .unwrap());
        // the one-query form used by authorisation agrees, and tells a missing patient apart
        for (user, patient, want) in [
            (&alice, &p1, Some(true)),
            (&bob, &p1, Some(false)),
            (&alice, &p3, Some(false)),
        ] {
            let got = patients::care_team_standing(&mut c, user, patient)
                .await
                .unwrap();
            assert_eq!(got, want, "{user} on {patient}");
        }
        assert_eq!(
            patients::care_team_standing(&mut c, &alice, "no-such-patient")
                .await
                .unwrap(),
            None
        );

        let got = patients::get(&mut c, &phi, &p2).await.unwrap().unwrap();
        assert_eq!(got.demographics.family_name, "O'Neil");
        assert_eq!(got.care_team_ids.len(), 2);
        let mut changed = got.demographics.clone();
        changed.given_name = "Benedict".into();
        patients::update(&mut c, &phi, &p2, &changed, 20)
            .await
            .unwrap();
        assert_eq!(
            patients::get(&mut c, &phi, &p2)
                .await
                .unwrap()
                .unwrap()
                .demographics
                .given_name,
            "Benedict"
        );
        assert!(matches!(
            patients::update(&mut c, &phi, "nope", &changed, 20).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(patients::get(&mut c, &phi, "nope").await.unwrap().is_none());
        assert!(care_teams::remove_member(&mut c, &cardio, &alice)
            .await
            .unwrap());
        assert!(!patients::on_users_care_team(&mut c, &alice, &p1)
            .await
            .unwrap());
    }
}

#[tokio::test]
async fn audit_commits_and_rolls_back_with_the_change() {
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let id = new_id();
        users::insert(&mut tx, &id, "carol", Role::Admin, 1)
            .await
            .unwrap();
        let s1 = audit::append(
            &mut tx,
            &AuditEvent::new(1, "user.create", Outcome::Success).target_user(&id),
        )
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
        assert!(users::by_id(&mut c, &id).await.unwrap().is_none());
        let f = audit::Filter {
            limit: 100,
            ..Default::default()
        };
        assert!(
            audit::list(&mut c, &f).await.unwrap().is_empty(),
            "{kind:?}"
        );
        drop(c);

        let mut tx = store.begin().await.unwrap();
        users::insert(&mut tx, &id, "carol", Role::Admin, 1)
            .await
            .unwrap();
        let s2 = audit::append(
            &mut tx,
            &AuditEvent::new(1, "user.create", Outcome::Success).target_user(&id),
        )
        .await
        .unwrap();
        let s3 = audit::append(
            &mut tx,
            &AuditEvent::new(2, "patient.read", Outcome::Denied)
                .actor(&id, "admin")
                .patient("p1")
                .origin(Some("10.0.0.1".into()), Some("req-1".into())),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(s2 > 0 && s3 > s2 && s1 > 0);
        let mut c = store.pool().acquire().await.unwrap();
        let all = audit::list(&mut c, &f).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].event.outcome, Outcome::Denied);
        assert_eq!(all[1].event.request_id.as_deref(), Some("req-1"));
        let only = audit::Filter {
            patient_id: Some("p1".into()),
            ..f.clone()
        };
        assert_eq!(audit::list(&mut c, &only).await.unwrap().len(), 1);
        let after = audit::Filter {
            after_seq: Some(s2),
            ..f.clone()
        };
        assert_eq!(audit::list(&mut c, &after).await.unwrap()[0].seq, s3);
    }
}

#[tokio::test]
async fn enrolment_links_break_glass_and_tokens() {
    for kind in backends() {
        let (_store, _db, mut c, phi) = keyed_store(kind).await;
        enrolments::create(
            &mut c,
            "h1",
            enrolments::Purpose::Setup,
            None,
            Role::Admin,
            0,
            100,
        )
        .await
        .unwrap();
        enrolments::create(
            &mut c,
            "h2",
            enrolments::Purpose::Setup,
            None,
            Role::Admin,
            1,
            100,
        )
        .await
        .unwrap();
        assert!(
            enrolments::get(&mut c, "h1")
                .await
                .unwrap()
                .unwrap()
                .used_at
                .is_some(),
            "older setup link revoked"
        );
        enrolments::set_pending(&mut c, "h2", "root-admin", "$hash", &[9])
            .await
            .unwrap();
        let e = enrolments::get(&mut c, "h2").await.unwrap().unwrap();
        assert_eq!(e.pending_username.as_deref(), Some("root-admin"));
        assert_eq!(e.role, Role::Admin);
        let uid = new_id();
        users::insert(&mut c, &uid, "root-admin", Role::Admin, 1)
            .await
            .unwrap();
        assert!(enrolments::mark_used(&mut c, "h2", &uid, 5).await.unwrap());
        assert!(
            !enrolments::mark_used(&mut c, "h2", &uid, 6).await.unwrap(),
            "single use"
        );
        assert!(enrolments::set_pending(&mut c, "h2", "x", "y", &[1])
            .await
            .is_err());
        assert!(enrolments::get(&mut c, "nope").await.unwrap().is_none());

        let pid = new_id();
        patients::insert(&mut c, &phi, &pid, &demo("M1", "A", "B"), 1)
            .await
            .unwrap();
        let g = break_glass::Grant {
            id: new_id(),
            user_id: uid.clone(),
            patient_id: pid.clone(),
            reason: "unconscious patient in ED".into(),
            granted_at: 1000,
            expires_at: 4600,
        };
        break_glass::insert(&mut c, &g).await.unwrap();
        assert_eq!(
            break_glass::active(&mut c, &uid, &pid, 4599).await.unwrap(),
            Some(g.clone())
        );
        assert_eq!(
            break_glass::active(&mut c, &uid, &pid, 4600).await.unwrap(),
            None
        );
        assert_eq!(break_glass::list(&mut c, 0, 10).await.unwrap(), vec![g]);
        assert!(break_glass::list(&mut c, 1001, 10)
            .await
            .unwrap()
            .is_empty());

        let t = tokens::ApiToken {
            id: new_id(),
            user_id: uid.clone(),
            name: "ehr-feed".into(),
            created_at: 1,
            expires_at: 1000,
            revoked_at: None,
            scopes: "audit.read".into(),
        };
        tokens::insert(&mut c, &t, "thash").await.unwrap();
        assert!(t.has_scope("audit.read") && !t.has_scope("audit"));
        assert_eq!(
            tokens::by_hash(&mut c, "thash").await.unwrap(),
            Some(t.clone())
        );
        assert_eq!(
            tokens::revoke(&mut c, &t.id, 50).await.unwrap(),
            Some(uid.clone())
        );
        assert_eq!(tokens::revoke(&mut c, &t.id, 51).await.unwrap(), None);
        assert_eq!(
            tokens::by_hash(&mut c, "thash")
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(50)
        );
        assert_eq!(tokens::list(&mut c).await.unwrap().len(), 1);
        let _ = DatabaseKind::Sqlite;
    }
}

async fn exercise_ephemeral(e: &Ephemeral) {
    let s = SessionRecord {
        user_id: "u1".into(),
        generation: 3,
        created_at: 100,
        last_seen: 100,
        mfa_pending: false,
    };
    e.put_session("abc", &s, 60, 100).await.unwrap();
    assert_eq!(e.get_session("abc", 101).await.unwrap(), Some(s.clone()));
    assert_eq!(e.get_session("other", 101).await.unwrap(), None);
    e.delete_session("abc").await.unwrap();
    assert_eq!(e.get_session("abc", 101).await.unwrap(), None);

    assert_eq!(e.failures("acct:u1", 100).await.unwrap(), None);
    for i in 1..=4u32 {
        let r = e
            .record_failure("acct:u1", 100 + i64::from(i), 900)
            .await
            .unwrap();
        assert_eq!(r.count, i);
        assert_eq!(r.last_failure, 100 + i64::from(i));
    }
    let r = e.failures("acct:u1", 110).await.unwrap().unwrap();
    assert_eq!((r.count, r.last_failure), (4, 104));
    e.clear_failures("acct:u1").await.unwrap();
    assert_eq!(e.failures("acct:u1", 110).await.unwrap(), None);
    e.ping().await.unwrap();
}

#[tokio::test]
async fn memory_sessions_and_counters_expire_by_the_clock() {
    let e = Ephemeral::memory();
    exercise_ephemeral(&e).await;
    let s = SessionRecord {
        user_id: "u".into(),
        generation: 0,
        created_at: 0,
        last_seen: 0,
        mfa_pending: true,
    };
    e.put_session("k", &s, 10, 0).await.unwrap();
    assert!(e.get_session("k", 9).await.unwrap().is_some());
    assert!(e.get_session("k", 10).await.unwrap().is_none());
    e.record_failure("ip:x", 0, 5).await.unwrap();
    assert!(e.failures("ip:x", 6).await.unwrap().is_none());
    assert_eq!(
        e.record_failure("ip:x", 6, 5).await.unwrap().count,
        1,
        "expired counter restarts"
    );
}

#[tokio::test]
async fn redis_sessions_and_counters() {
    let Some(url) = redis_url() else {
        eprintln!("MEDAI_TEST_REDIS_URL not set; Redis store not exercised");
        return;
    };
    let e = Ephemeral::redis(&url, None, &unique_prefix())
        .await
        .unwrap();
    assert_eq!(e.kind(), "redis");
    exercise_ephemeral(&e).await;
    // Two handles with the same prefix (two replicas) see the same state.
    let prefix = unique_prefix();
    let a = Ephemeral::redis(&url, None, &prefix).await.unwrap();
    let b = Ephemeral::redis(&url, None, &prefix).await.unwrap();
    a.record_failure("acct:shared", 10, 60).await.unwrap();
    assert_eq!(
        b.record_failure("acct:shared", 11, 60).await.unwrap().count,
        2
    );
    let s = SessionRecord {
        user_id: "u".into(),
        generation: 0,
        created_at: 0,
        last_seen: 0,
        mfa_pending: false,
    };
    a.put_session("shared", &s, 60, 0).await.unwrap();
    assert_eq!(b.get_session("shared", 0).await.unwrap(), Some(s));
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    let Some(server) = tls_redis::TlsRedis::start() else {
        return;
    };
    let ca = RedisCa::load(server.ca_file()).unwrap();
    let e = Ephemeral::redis(&server.url(), Some(&ca), &unique_prefix())
        .await
        .unwrap();
    assert_eq!(e.kind(), "redis");
    exercise_ephemeral(&e).await;
    // A second replica over its own TLS connection sees the same counters and sessions.
    let prefix = unique_prefix();
    let a = Ephemeral::redis(&server.url(), Some(&ca), &prefix)
        .await
        .unwrap();
    let b = Ephemeral::redis(&server.url(), Some(&ca), &prefix)
        .await
        .unwrap();
    a.record_failure("acct:shared", 10, 60).await.unwrap();
    assert_eq!(
        b.record_failure("acct:shared", 11, 60).await.unwrap().count,
        2
    );
    let s = SessionRecord {
        user_id: "u".into(),
        generation: 1,
        created_at: 0,
        last_seen: 0,
        mfa_pending: false,
    };
    a.put_session("shared", &s, 60, 0).await.unwrap();
    assert_eq!(b.get_session("shared", 0).await.unwrap(), Some(s));
}

#[tokio::test]
async fn redis_over_tls_refuses_a_certificate_it_cannot_verify() {
    let Some(server) = tls_redis::TlsRedis::start() else {
        return;
    };
    // Without the CA: the public roots do not know the server's issuer.
    let err = Ephemeral::redis(&server.url(), None, &unique_prefix())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::RedisConnect { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(msg.contains("127.0.0.1:"), "{msg}");
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("set `redis_ca_file`"), "{msg}");

    // With a CA that did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    tls_redis::TestCa::new("some other CA").write_pem(&other);
    let other = RedisCa::load(&other).unwrap();
    let err = Ephemeral::redis(&server.url(), Some(&other), &unique_prefix())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("does not chain to `redis_ca_file`"), "{msg}");

    // A CA bundle is refused with a plain redis:// URL rather than silently unused.
    let url = server.url().replace("rediss://", "redis://");
    let ca = RedisCa::load(server.ca_file()).unwrap();
    let err = Ephemeral::redis(&url, Some(&ca), &unique_prefix())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rediss://"), "{err}");
}

#[path = "store/audit_log.rs"]
mod audit_log;

/// The raw stored columns of a patient row, read past the repository.
async fn raw_patient(c: &mut medai_store::AnyConnection, id: &str) -> (Vec<String>, Vec<Vec<u8>>) {
    use sqlx::Row as _;
    let r = sqlx::query(
        "SELECT mrn, given_name, family_name, date_of_birth, mrn_index, date_of_birth_index, \
         mrn_enc, given_name_enc, family_name_enc, date_of_birth_enc FROM patients WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await
    .unwrap();
    let text = (0..6).map(|i| r.get::<String, _>(i)).collect();
    let blobs = (6..10).map(|i| r.get::<Vec<u8>, _>(i)).collect();
    (text, blobs)
}

async fn set_blob(c: &mut medai_store::AnyConnection, id: &str, column: &str, value: Vec<u8>) {
    let n = sqlx::query(&format!("UPDATE patients SET {column} = $1 WHERE id = $2"))
        .bind(value)
        .bind(id)
        .execute(&mut *c)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn demographics_are_ciphertext_at_rest_and_searchable_only_through_blind_indexes() {
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
        let master = medai_crypto::MasterKey::generate();
        let phi = phi_keys::load_or_init(&mut c, &master, 1).await.unwrap();
        let p1 = new_id();
        patients::insert(
            &mut c,
            &phi,
            &p1,
            &demo("MRN-7731", "Zelda", "Quartermain"),
            5,
        )
        .await
        .unwrap();

        let (text, blobs) = raw_patient(&mut c, &p1).await;
        assert_eq!(
            text[0], p1,
            "{kind:?}: the plaintext mrn column holds the row id"
        );
        assert_eq!(&text[1..4], &["", "", ""]);
        assert_eq!(text[4].len(), 64);
        assert_eq!(text[5].len(), 64);
        for b in &blobs {
            for plain in [&b"MRN-7731"[..], b"Zelda", b"Quartermain", b"1960-05-17"] {
                assert!(!contains(b, plain), "{kind:?}: plaintext in a ciphertext");
            }
        }
        let tokens: Vec<(String,)> =
            sqlx::query_as("SELECT token FROM patient_name_index WHERE patient_id = $1")
                .bind(&p1)
                .fetch_all(&mut *c)
                .await
                .unwrap();
        assert!(tokens.len() > 20, "1- to 3-grams of the full name");
        assert!(tokens
            .iter()
            .all(|(t,)| t.len() == 64 && !t.contains("zel")));

        // The keys persist wrapped: a restart with the same key file reads the row back, and
        // no new key is created.
        let again = phi_keys::load_or_init(&mut c, &master, 2).await.unwrap();
        let got = patients::get(&mut c, &again, &p1).await.unwrap().unwrap();
        assert_eq!(got.demographics.family_name, "Quartermain");
        assert_eq!(got.demographics.mrn, "MRN-7731");
        let (keys,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM phi_keys")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(keys, 2, "one data key and one blind-index key");

        // Search by MRN (any case), by name substring across given and family, by date.
        let by = |s: patients::Search| patients::Search { limit: 10, ..s };
        for s in [
            by(patients::Search {
                mrn: Some("mrn-7731".into()),
                ..Default::default()
            }),
            by(patients::Search {
                name: Some("DA QUART".into()),
                ..Default::default()
            }),
            by(patients::Search {
                name: Some("z".into()),
                ..Default::default()
            }),
            by(patients::Search {
                date_of_birth: Some(date!(1960 - 05 - 17)),
                ..Default::default()
            }),
        ] {
            let found = patients::search(&mut c, &phi, &s).await.unwrap();
            assert_eq!(found.len(), 1, "{kind:?} {s:?}");
        }
        // All trigrams present but not contiguous: the exact check after decryption refuses it.
        let scattered = by(patients::Search {
            name: Some("zelmain".into()),
            ..Default::default()
        });
        assert!(patients::search(&mut c, &phi, &scattered)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            patients::insert(&mut c, &phi, &new_id(), &demo("mrn-7731", "A", "B"), 5).await,
            Err(StoreError::Conflict("mrn"))
        ));
    }
}

#[tokio::test]
async fn tampered_ciphertext_wrong_key_and_missing_key_version_are_clear_errors() {
    use medai_crypto::envelope::FieldError;
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
        let master = medai_crypto::MasterKey::generate();
        let phi = phi_keys::load_or_init(&mut c, &master, 1).await.unwrap();
        let (p1, p2) = (new_id(), new_id());
        patients::insert(&mut c, &phi, &p1, &demo("M-1", "Ada", "Lovelace"), 5)
            .await
            .unwrap();
        patients::insert(&mut c, &phi, &p2, &demo("M-2", "Alan", "Turing"), 5)
            .await
            .unwrap();
        let all = patients::Search {
            limit: 10,
            ..Default::default()
        };
        let (_, blobs) = raw_patient(&mut c, &p1).await;
        let (_, other) = raw_patient(&mut c, &p2).await;
        let decrypt_error = |r: Result<Option<patients::Patient>, StoreError>| match r {
            Err(StoreError::Decrypt {
                table,
                column,
                row_id,
                source,
            }) => {
                assert_eq!(table, "patients");
                (column, row_id, source)
            }
            other => panic!("expected a decrypt error, got {other:?}"),
        };

        // A flipped bit in the ciphertext.
        let mut flipped = blobs[2].clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        set_blob(&mut c, &p1, "family_name_enc", flipped).await;
        let (column, row, source) = decrypt_error(patients::get(&mut c, &phi, &p1).await);
        assert_eq!(
            (column, row.as_str(), source),
            ("family_name", p1.as_str(), FieldError::Open)
        );
        let msg = patients::get(&mut c, &phi, &p1)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            !msg.contains("Lovelace") && msg.contains("family_name"),
            "{msg}"
        );
        // Search fails as a whole rather than skipping or returning the bad row.
        assert!(matches!(
            patients::search(&mut c, &phi, &all).await,
            Err(StoreError::Decrypt { .. })
        ));
        set_blob(&mut c, &p1, "family_name_enc", blobs[2].clone()).await;
        assert!(patients::get(&mut c, &phi, &p1).await.unwrap().is_some());

        // Another row's ciphertext copied here.
        set_blob(&mut c, &p1, "given_name_enc", other[1].clone()).await;
        let (column, _, source) = decrypt_error(patients::get(&mut c, &phi, &p1).await);
        assert_eq!((column, source), ("given_name", FieldError::Open));
        set_blob(&mut c, &p1, "given_name_enc", blobs[1].clone()).await;

        // A key version this ring does not hold, and a truncated value.
        let mut relabelled = blobs[0].clone();
        relabelled[4] = 9;
        set_blob(&mut c, &p1, "mrn_enc", relabelled).await;
        let (column, _, source) = decrypt_error(patients::get(&mut c, &phi, &p1).await);
        assert_eq!((column, source), ("mrn", FieldError::MissingKeyVersion(9)));
        set_blob(&mut c, &p1, "mrn_enc", blobs[0][..8].to_vec()).await;
        let (_, _, source) = decrypt_error(patients::get(&mut c, &phi, &p1).await);
        assert_eq!(source, FieldError::Malformed);
        set_blob(&mut c, &p1, "mrn_enc", blobs[0].clone()).await;
        assert_eq!(
            patients::get(&mut c, &phi, &p1)
                .await
                .unwrap()
                .unwrap()
                .demographics
                .mrn,
            "M-1"
        );

        // The wrong key file: the wrapped keys do not unwrap; nothing is created in their place.
        let wrong = phi_keys::load_or_init(&mut c, &medai_crypto::MasterKey::generate(), 2).await;
        assert!(
            matches!(&wrong, Err(StoreError::KeyUnwrap { .. })),
            "{kind:?}: {wrong:?}"
        );
        // A tampered wrapped key.
        sqlx::query("UPDATE phi_keys SET wrapped = $1 WHERE purpose = 'data'")
            .bind(vec![1u8; 60])
            .execute(&mut *c)
            .await
            .unwrap();
        assert!(matches!(
            phi_keys::load_or_init(&mut c, &master, 3).await,
            Err(StoreError::KeyUnwrap { version: 1, .. })
        ));
    }
}

#[tokio::test]
async fn plaintext_rows_from_before_encryption_are_encrypted_in_resumable_batches() {
    for kind in backends() {
        let (_store, _db, mut c, phi) = keyed_store(kind).await;
        let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex, \
                 created_at, updated_at) VALUES ($1, $2, 'Old', $3, '1950-02-03', 'male', 1, 1)",
            )
            .bind(id)
            .bind(format!("LEGACY-{i}"))
            .bind(format!("Row{i}"))
            .execute(&mut *c)
            .await
            .unwrap();
        }
        // Not yet encrypted: a clear error, not plaintext passed off as decrypted data.
        let err = patients::get(&mut c, &phi, &ids[0]).await.unwrap_err();
        assert!(err.to_string().contains("medai migrate"), "{err}");

        assert_eq!(
            patients::encrypt_plaintext(&mut c, &phi, 2).await.unwrap(),
            2
        );
        assert_eq!(
            patients::encrypt_plaintext(&mut c, &phi, 2).await.unwrap(),
            1
        );
        assert_eq!(
            patients::encrypt_plaintext(&mut c, &phi, 2).await.unwrap(),
            0
        );
        for (i, id) in ids.iter().enumerate() {
            let p = patients::get(&mut c, &phi, id).await.unwrap().unwrap();
            assert_eq!(p.demographics.mrn, format!("LEGACY-{i}"), "{kind:?}");
            assert_eq!(p.demographics.family_name, format!("Row{i}"));
            assert_eq!(p.demographics.date_of_birth, date!(1950 - 02 - 03));
            let (text, _) = raw_patient(&mut c, id).await;
            assert_eq!(text[0], *id);
            assert_eq!(&text[1..4], &["", "", ""], "plaintext blanked");
        }
        let s = patients::Search {
            name: Some("old row1".into()),
            limit: 10,
            ..Default::default()
        };
        let found = patients::search(&mut c, &phi, &s).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, ids[1]);
    }
}

#[tokio::test]
async fn rotation_and_batched_reencryption_with_a_concurrent_writer_lose_nothing() {
    use std::sync::Arc;
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let master = Arc::new(medai_crypto::MasterKey::generate());
        let mut c = store.pool().acquire().await.unwrap();
        let phi = phi_keys::load_or_init(&mut c, &*master, 1).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..30 {
            let id = new_id();
            patients::insert(
                &mut c,
                &phi,
                &id,
                &demo(&format!("R-{i}"), "Given", &format!("Orig{i}")),
                1,
            )
            .await
            .unwrap();
            ids.push(id);
        }
        drop(c);
        let keyring = Arc::new(phi_keys::PhiKeyring::new(phi));

        // The server keeps writing (it asks the keyring for the current keys in each write).
        let writer = {
            let (store, keyring, master, ids) =
                (store.clone(), keyring.clone(), master.clone(), ids.clone());
            tokio::spawn(async move {
                let mut last = std::collections::HashMap::new();
                for round in 0..60 {
                    let id = &ids[(round * 7) % ids.len()];
                    let mut tx = store.begin().await.unwrap();
                    let phi = keyring.current(&mut tx, &*master, 2).await.unwrap();
                    let mut d = patients::get(&mut tx, &phi, id)
                        .await
                        .unwrap()
                        .unwrap()
                        .demographics;
                    d.family_name = format!("W{round}");
                    patients::update(&mut tx, &phi, id, &d, 2).await.unwrap();
                    tx.commit().await.unwrap();
                    last.insert(id.clone(), d.family_name);
                    tokio::task::yield_now().await;
                }
                last
            })
        };

        let mut tx = store.begin().await.unwrap();
        assert_eq!(phi_keys::rotate(&mut tx, &*master, 2).await.unwrap(), 2);
        tx.commit().await.unwrap();
        // Re-encrypt one batch, "crash", then resume with freshly loaded keys.
        let mut c = store.pool().acquire().await.unwrap();
        let fresh = phi_keys::load_or_init(&mut c, &*master, 2).await.unwrap();
        drop(c);
        assert_eq!(fresh.current_version(), Some(2));
        let mut tx = store.begin().await.unwrap();
        let first = patients::reencrypt(&mut tx, &fresh, 7).await.unwrap();
        tx.commit().await.unwrap();
        assert!(first > 0 && first <= 7, "{kind:?}: {first}");
        let mut c = store.pool().acquire().await.unwrap();
        let resumed = phi_keys::load_or_init(&mut c, &*master, 3).await.unwrap();
        drop(c);
        let mut rounds = 0;
        loop {
            let mut tx = store.begin().await.unwrap();
            patients::reencrypt(&mut tx, &resumed, 7).await.unwrap();
            let left = patients::rows_under_older_keys(&mut tx, 2).await.unwrap();
            tx.commit().await.unwrap();
            if left == 0 {
                break;
            }
            rounds += 1;
            assert!(rounds < 1000, "re-encryption makes progress");
        }
        let last = writer.await.unwrap();

        let mut c = store.pool().acquire().await.unwrap();
        assert_eq!(
            patients::rows_under_older_keys(&mut c, 2).await.unwrap(),
            0,
            "{kind:?}"
        );
        let versions: Vec<(i64,)> = sqlx::query_as("SELECT DISTINCT key_version FROM patients")
            .fetch_all(&mut *c)
            .await
            .unwrap();
        assert_eq!(versions, vec![(2,)], "{kind:?}");
        // Every row decrypts to the last value written: no update lost to re-encryption.
        for (i, id) in ids.iter().enumerate() {
            let p = patients::get(&mut c, &resumed, id).await.unwrap().unwrap();
            let want = last.get(id).cloned().unwrap_or_else(|| format!("Orig{i}"));
            assert_eq!(p.demographics.family_name, want, "{kind:?}");
            assert_eq!(p.demographics.mrn, format!("R-{i}"));
        }
        // Data key 1 is still stored (re-wrapped) and still opens old backups' rows.
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM phi_keys WHERE purpose = 'data'")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert!(
            phi_keys::status(&mut c, &*master)
                .await
                .unwrap()
                .iter()
                .all(|k| k.unwraps),
            "re-wrapped keys unwrap"
        );
    }
}

#[tokio::test]
async fn blind_index_rotation_reindexes_under_a_concurrent_writer_and_search_finds_the_patient_throughout(
) {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    for kind in backends() {
        let (store, _db) = migrated_store(kind).await.unwrap();
        let master = Arc::new(medai_crypto::MasterKey::generate());
        let mut c = store.pool().acquire().await.unwrap();
        let phi = phi_keys::load_or_init(&mut c, &*master, 1).await.unwrap();
        assert_eq!(phi.index_version(), 0);
        let target = new_id();
        patients::insert(&mut c, &phi, &target, &demo("MRN-T", "Ada", "Lovelace"), 1)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..24 {
            let id = new_id();
            patients::insert(
                &mut c,
                &phi,
                &id,
                &demo(&format!("B-{i}"), "Given", &format!("Fam{i}")),
                1,
            )
            .await
            .unwrap();
            ids.push(id);
        }
        drop(c);
        let keyring = Arc::new(phi_keys::PhiKeyring::new(phi));

        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            phi_keys::rotate_blind_index(&mut tx, &*master, 2)
                .await
                .unwrap(),
            1
        );
        tx.commit().await.unwrap();
        // Before any row is re-indexed, the old version cannot be retired.
        let mut c = store.pool().acquire().await.unwrap();
        let e = phi_keys::retire_blind_index(&mut c).await.unwrap_err();
        assert!(e.to_string().contains("still indexed"), "{kind:?}: {e}");
        let fresh = keyring.current(&mut c, &*master, 2).await.unwrap();
        assert_eq!(fresh.index_versions(), vec![0, 1], "{kind:?}");
        // An MRN held by a row still indexed under version 0 is refused under version 1.
        let e = patients::insert(&mut c, &fresh, &new_id(), &demo("b-3", "X", "Y"), 2)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict("mrn")), "{kind:?}: {e:?}");
        drop(c);

        // The server keeps writing (new patients, renames) and searching while rows move.
        let stop = Arc::new(AtomicBool::new(false));
        let searches = Arc::new(AtomicU32::new(0));
        let writer = {
            let (store, keyring, master, ids) =
                (store.clone(), keyring.clone(), master.clone(), ids.clone());
            tokio::spawn(async move {
                let mut added = Vec::new();
                for round in 0..30 {
                    let mut tx = store.begin().await.unwrap();
                    let phi = keyring.current(&mut tx, &*master, 3).await.unwrap();
                    let id = new_id();
                    patients::insert(
                        &mut tx,
                        &phi,
                        &id,
                        &demo(&format!("N-{round}"), "New", &format!("Writer{round}")),
                        3,
                    )
                    .await
                    .unwrap();
                    let other = &ids[(round * 5) % ids.len()];
                    let mut d = patients::get(&mut tx, &phi, other)
                        .await
                        .unwrap()
                        .unwrap()
                        .demographics;
                    d.family_name = format!("Renamed{round}");
                    patients::update(&mut tx, &phi, other, &d, 3).await.unwrap();
                    tx.commit().await.unwrap();
                    added.push((id, format!("N-{round}")));
                    tokio::task::yield_now().await;
                }
                added
            })
        };
        let searcher = {
            let (store, keyring, master, target, stop, searches) = (
                store.clone(),
                keyring.clone(),
                master.clone(),
                target.clone(),
                stop.clone(),
                searches.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let mut c = store.pool().acquire().await.unwrap();
                    let phi = keyring.current(&mut c, &*master, 3).await.unwrap();
                    for s in [
                        patients::Search {
                            mrn: Some("mrn-t".into()),
                            limit: 10,
                            ..Default::default()
                        },
                        patients::Search {
                            name: Some("lovel".into()),
                            date_of_birth: Some(date!(1960 - 05 - 17)),
                            limit: 10,
                            ..Default::default()
                        },
                    ] {
                        let found = patients::search(&mut c, &phi, &s).await.unwrap();
                        assert_eq!(
                            found.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
                            vec![target.as_str()],
                            "the patient is found throughout the rotation"
                        );
                    }
                    drop(c);
                    searches.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        };

        // Re-index one batch, "crash", then resume with freshly loaded keys.
        let mut tx = store.begin().await.unwrap();
        let first = patients::reindex(&mut tx, &fresh, 4).await.unwrap();
        tx.commit().await.unwrap();
        assert!(first > 0 && first <= 4, "{kind:?}: {first}");
        let mut c = store.pool().acquire().await.unwrap();
        let resumed = phi_keys::load_or_init(&mut c, &*master, 3).await.unwrap();
        drop(c);
        let mut rounds = 0;
        loop {
            let mut tx = store.begin().await.unwrap();
            patients::reindex(&mut tx, &resumed, 4).await.unwrap();
            let left = patients::rows_under_older_index(&mut tx, 1).await.unwrap();
            tx.commit().await.unwrap();
            if left == 0 {
                break;
            }
            rounds += 1;
            assert!(rounds < 1000, "re-indexing makes progress");
        }
        let added = writer.await.unwrap();
        // Let the searcher run at least once after the last row moved.
        let seen = searches.load(Ordering::SeqCst);
        while searches.load(Ordering::SeqCst) < seen + 2 {
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::SeqCst);
        searcher.await.unwrap();
        assert!(searches.load(Ordering::SeqCst) >= 2, "{kind:?}");

        let mut c = store.pool().acquire().await.unwrap();
        let versions: Vec<(i64,)> = sqlx::query_as("SELECT DISTINCT index_version FROM patients")
            .fetch_all(&mut *c)
            .await
            .unwrap();
        assert_eq!(versions, vec![(1,)], "{kind:?}");
        // Retire version 0; keys loaded afterwards hold only version 1 and find everyone.
        assert_eq!(phi_keys::retire_blind_index(&mut c).await.unwrap(), vec![0]);
        let after = phi_keys::load_or_init(&mut c, &*master, 4).await.unwrap();
        assert_eq!(after.index_versions(), vec![1], "{kind:?}");
        let mut everyone: Vec<(String, String)> = added;
        everyone.push((target.clone(), "MRN-T".into()));
        for (i, id) in ids.iter().enumerate() {
            everyone.push((id.clone(), format!("B-{i}")));
        }
        for (id, mrn) in &everyone {
            let s = patients::Search {
                mrn: Some(mrn.clone()),
                limit: 10,
                ..Default::default()
            };
            let found = patients::search(&mut c, &after, &s).await.unwrap();
            assert_eq!(found.len(), 1, "{kind:?}: {mrn}");
            assert_eq!(&found[0].id, id, "{kind:?}");
        }
        let s = patients::Search {
            name: Some("renamed".into()),
            limit: 100,
            ..Default::default()
        };
        assert!(
            !patients::search(&mut c, &after, &s)
                .await
                .unwrap()
                .is_empty(),
            "renames during re-indexing are searchable"
        );
    }
}

/// The single integer `sql` returns.
async fn one_int(c: &mut sqlx::AnyConnection, sql: &str) -> i64 {
    let (v,): (i64,) = sqlx::query_as(sql).fetch_one(c).await.unwrap();
    v
}

#[tokio::test]
async fn sqlite_commits_leave_the_checkpoint_to_a_background_connection() {
    let db = fresh_database(DatabaseKind::Sqlite).await.unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    let mut c = store.pool().acquire().await.unwrap();
    // No commit runs a checkpoint (and its file sync) on the request path.
    assert_eq!(one_int(&mut c, "PRAGMA wal_autocheckpoint").await, 0);
    medai_store::testkit::execute(&mut c, "CREATE TABLE filler (b BLOB)")
        .await
        .unwrap();
    let path = db
        .url
        .strip_prefix("sqlite://")
        .and_then(|p| p.split('?').next())
        .unwrap()
        .to_owned();
    let before = std::fs::metadata(&path).unwrap().len();
    for _ in 0..64 {
        medai_store::testkit::execute(&mut c, "INSERT INTO filler (b) VALUES (randomblob(32768))")
            .await
            .unwrap();
    }
    drop(c);
    // 2 MiB committed: fewer pages than SQLite's own automatic checkpoint would wait for, so
    // only the background checkpointer moves them into the database file.
    let mut grown = 0;
    for _ in 0..100 {
        grown = std::fs::metadata(&path)
            .unwrap()
            .len()
            .saturating_sub(before);
        if grown >= 2 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        grown >= 2 * 1024 * 1024,
        "the database file grew by {grown} bytes"
    );
    let mut c = store.pool().acquire().await.unwrap();
    assert_eq!(one_int(&mut c, "SELECT COUNT(*) FROM filler").await, 64);
    // Rows rewritten (a plaintext row encrypted in place, say) must not linger in the log once
    // the store is closed: the last pass empties it.
    medai_store::testkit::execute(&mut c, "UPDATE filler SET b = zeroblob(32768)")
        .await
        .unwrap();
    drop(c);
    let wal = format!("{path}-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0,
        "the update is in the log"
    );
    store.close().await;
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "log left after close"
    );
}

#[tokio::test]
async fn messages_are_numbered_in_the_insert_and_the_recent_ones_come_back_in_order() {
    use medai_store::conversations::{self, MessageKind, NewMessage};
    for kind in backends() {
        let (_store, _db, mut c, phi) = keyed_store(kind).await;
        let doc = new_id();
        users::insert(&mut c, &doc, "doc", Role::Clinician, 1)
            .await
            .unwrap();
        let pid = new_id();
        patients::insert(&mut c, &phi, &pid, &demo("MRN-9", "Ana", "Ruiz"), 10)
            .await
            .unwrap();
        let (one, two) = (new_id(), new_id());
        for cid in [&one, &two] {
            conversations::create(&mut c, &phi, cid, &pid, &doc, "t", 10)
                .await
                .unwrap();
        }
        // interleaved: each conversation numbers its own messages from 1
        for i in 1..=4i64 {
            for cid in [&one, &two] {
                let body = format!("message {i} of {cid}");
                let m = conversations::append_message(
                    &mut c,
                    &phi,
                    &NewMessage {
                        id: &new_id(),
                        conversation_id: cid,
                        kind: if i % 2 == 1 {
                            MessageKind::Question
                        } else {
                            MessageKind::Answer
                        },
                        author_id: (i % 2 == 1).then_some(doc.as_str()),
                        body: &body,
                        provenance: None,
                        escalations: &[],
                    },
                    10 + i,
                )
                .await
                .unwrap();
                assert_eq!(m.seq, i, "{kind:?}");
            }
        }
        let recent = conversations::recent_messages(&mut c, &phi, &one, 3)
            .await
            .unwrap();
        let got: Vec<(i64, String)> = recent.iter().map(|m| (m.seq, m.body.clone())).collect();
        let want: Vec<(i64, String)> = (2..=4)
            .map(|i| (i, format!("message {i} of {one}")))
            .collect();
        assert_eq!(got, want, "{kind:?}: the last three, oldest first");
        let all = conversations::messages(&mut c, &phi, &two).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            conversations::recent_messages(&mut c, &phi, &two, 10)
                .await
                .unwrap()
                .len(),
            4,
            "a limit past the end returns them all"
        );
    }
}
