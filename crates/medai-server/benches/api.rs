//! Benchmark (not a timed test): login throughput and the latency of an authenticated
//! `GET /api/v1/patients/{id}`, on SQLite and, when `MEDAI_TEST_POSTGRES_URL` is set, PostgreSQL.
//! Runs the real server on loopback with the production argon2id cost and prints figures.
//!
//! `cargo bench -p medai-server --bench api` (set `MEDAI_BENCH_USERS`, `MEDAI_BENCH_READS` to
//! change the load).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    dead_code,
    reason = "benchmark harness"
)]

#[path = "../tests/api/common.rs"]
mod common;

use common::{client, Sessions, TestApp, PASSWORD};
use medai_core::Role;
use medai_store::DatabaseKind;
use serde_json::json;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench(kind: DatabaseKind, users: usize, reads: usize, concurrency: usize) {
    let app = TestApp::start(kind, Sessions::Memory).await;
    let admin = app.admin().await;
    let team = app.care_team(&admin, "bench").await;
    let mut secrets = Vec::with_capacity(users);
    for i in 0..users {
        let r = admin
            .client
            .post(app.url("/api/v1/users"))
            .json(&json!({"username": format!("user{i}"), "role": "clinician"}))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        admin
            .client
            .put(app.url(&format!("/api/v1/care-teams/{team}/members/{id}")))
            .send()
            .await
            .unwrap();
        let token = v["enrolment_url"]
            .as_str()
            .unwrap()
            .split_once("token=")
            .unwrap()
            .1
            .to_owned();
        let (secret, _) = app.enrol(&token, None, PASSWORD).await;
        secrets.push(secret);
    }
    // Full logins (password + TOTP), `concurrency` at a time, each user once.
    let app = std::sync::Arc::new(app);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let secrets = std::sync::Arc::new(secrets);
    for w in 0..concurrency {
        let app = std::sync::Arc::clone(&app);
        let secrets = std::sync::Arc::clone(&secrets);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..secrets.len()).step_by(concurrency) {
                let c = client();
                let t = Instant::now();
                let r = c
                    .post(app.url("/api/v1/auth/login"))
                    .json(&json!({"username": format!("user{i}"), "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let r = c
                    .post(app.url("/api/v1/auth/totp"))
                    .json(&json!({"code": app.code(&secrets[i])}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut login_lat = Vec::new();
    for t in tasks {
        login_lat.extend(t.await.unwrap());
    }
    let login_wall = started.elapsed();
    login_lat.sort();

    // Authenticated reads of one patient: sequential latency, then throughput with concurrency.
    app.next_totp_step();
    let doc = app.login("user0", PASSWORD, &secrets[0]).await;
    let doc = common::Actor {
        client: doc,
        id: String::new(),
        secret: secrets[0].clone(),
    };
    let pid = app
        .patient(&doc, "BENCH-1", "Bench", Some(vec![team.clone()]))
        .await;
    let url = app.url(&format!("/api/v1/patients/{pid}"));
    for _ in 0..50 {
        doc.client.get(&url).send().await.unwrap();
    }
    let mut read_lat = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        let r = doc.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        read_lat.push(t.elapsed());
    }
    read_lat.sort();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let c = doc.client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..reads / concurrency {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read_wall = started.elapsed();
    let done = (reads / concurrency) * concurrency;

    println!("backend={kind:?}");
    println!(
        "  login (password+TOTP, argon2id m=19456 t=2 p=1): {} logins, concurrency {concurrency}: {:.1} logins/s, p50 {:.1} ms, p99 {:.1} ms",
        login_lat.len(),
        login_lat.len() as f64 / login_wall.as_secs_f64(),
        ms(percentile(&login_lat, 0.5)),
        ms(percentile(&login_lat, 0.99)),
    );
    println!(
        "  GET /api/v1/patients/{{id}} (authenticated, audited): sequential {reads} requests: p50 {:.2} ms, p99 {:.2} ms; concurrency {concurrency}: {:.0} requests/s",
        ms(percentile(&read_lat, 0.5)),
        ms(percentile(&read_lat, 0.99)),
        done as f64 / read_wall.as_secs_f64(),
    );
}

fn main() {
    let users = env_num("MEDAI_BENCH_USERS", 64);
    let reads = env_num("MEDAI_BENCH_READS", 2000);
    let concurrency = env_num("MEDAI_BENCH_CONCURRENCY", 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "medai API benchmark: {users} users, {reads} reads, {} CPU cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for kind in medai_store::testkit::backends() {
        rt.block_on(bench(kind, users, reads, concurrency));
    }
    let _ = Role::Clinician;
}
