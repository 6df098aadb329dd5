//! Storage tests, each run on SQLite and (when `MEDAI_TEST_POSTGRES_URL` is set) PostgreSQL,
//! every test in its own database.
#![allow(clippy::unwrap_used, reason = "integration test")]

use medai_core::audit::{AuditEvent, Outcome};
use medai_core::patient::{Demographics, Sex};
use medai_core::Role;
use medai_store::ephemeral::{Ephemeral, SessionRecord};
use medai_store::testkit::{backends, fresh_database, migrated_store, redis_url, unique_prefix};
use medai_store::{
    audit, break_glass, care_teams, enrolments, new_id, patients, tokens, users, DatabaseKind,
    SchemaStatus, Store, StoreError,
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
        let (store, _db) = migrated_store(kind).await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
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
        patients::insert(&mut c, &p1, &demo("MRN-1", "Ana", "García"), 10)
            .await
            .unwrap();
        patients::insert(&mut c, &p2, &demo("MRN-2", "Ben", "O'Neil"), 10)
            .await
            .unwrap();
        let mut d3 = demo("MRN-3", "Cara", "100% Real");
        d3.sex = Sex::Male;
        d3.date_of_birth = date!(1990 - 01 - 02);
        patients::insert(&mut c, &p3, &d3, 10).await.unwrap();
        assert!(matches!(
            patients::insert(&mut c, &new_id(), &demo("MRN-1", "X", "Y"), 10).await,
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
        assert_eq!(patients::search(&mut c, &all).await.unwrap().len(), 3);
        let by_name = search(patients::Search {
            name: Some("gARc".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &by_name).await.unwrap()),
            vec![p1.clone()],
            "{kind:?}"
        );
        let full = search(patients::Search {
            name: Some("ben o'n".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &full).await.unwrap()),
            vec![p2.clone()]
        );
        let pct = search(patients::Search {
            name: Some("%".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &pct).await.unwrap()),
            vec![p3.clone()],
            "% is literal"
        );
        let dob = search(patients::Search {
            date_of_birth: Some(date!(1990 - 01 - 02)),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &dob).await.unwrap()),
            vec![p3.clone()]
        );
        let sex = search(patients::Search {
            sex: Some(Sex::Female),
            ..all.clone()
        });
        assert_eq!(patients::search(&mut c, &sex).await.unwrap().len(), 2);
        let mrn = search(patients::Search {
            mrn: Some("MRN-2".into()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &mrn).await.unwrap()),
            vec![p2.clone()]
        );

        let alices = search(patients::Search {
            care_team_member: Some(alice.clone()),
            ..all.clone()
        });
        let mut got = ids(patients::search(&mut c, &alices).await.unwrap());
        got.sort();
        let mut want = vec![p1.clone(), p2.clone()];
        want.sort();
        assert_eq!(got, want);
        let bobs = search(patients::Search {
            care_team_member: Some(bob.clone()),
            ..all.clone()
        });
        assert_eq!(
            ids(patients::search(&mut c, &bobs).await.unwrap()),
            vec![p2.clone()]
        );
        let page = search(patients::Search {
            limit: 1,
            offset: 1,
            ..all.clone()
        });
        assert_eq!(patients::search(&mut c, &page).await.unwrap().len(), 1);

        assert!(patients::on_users_care_team(&mut c, &alice, &p1)
            .await
            .unwrap());
        assert!(!patients::on_users_care_team(&mut c, &bob, &p1)
            .await
            .unwrap());
        assert!(!patients::on_users_care_team(&mut c, &alice, &p3)
            .await
            .unwrap());

        let got = patients::get(&mut c, &p2).await.unwrap().unwrap();
        assert_eq!(got.demographics.family_name, "O'Neil");
        assert_eq!(got.care_team_ids.len(), 2);
        let mut changed = got.demographics.clone();
        changed.given_name = "Benedict".into();
        patients::update(&mut c, &p2, &changed, 20).await.unwrap();
        assert_eq!(
            patients::get(&mut c, &p2)
                .await
                .unwrap()
                .unwrap()
                .demographics
                .given_name,
            "Benedict"
        );
        assert!(matches!(
            patients::update(&mut c, "nope", &changed, 20).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(patients::get(&mut c, "nope").await.unwrap().is_none());
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
        let (store, _db) = migrated_store(kind).await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
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
        patients::insert(&mut c, &pid, &demo("M1", "A", "B"), 1)
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
        };
        tokens::insert(&mut c, &t, "thash").await.unwrap();
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
    let e = Ephemeral::redis(&url, &unique_prefix()).await.unwrap();
    assert_eq!(e.kind(), "redis");
    exercise_ephemeral(&e).await;
    // Two handles with the same prefix (two replicas) see the same state.
    let prefix = unique_prefix();
    let a = Ephemeral::redis(&url, &prefix).await.unwrap();
    let b = Ephemeral::redis(&url, &prefix).await.unwrap();
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
