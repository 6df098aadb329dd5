//! The S3 checkpoint sink (official SDK) against moto's server, which implements S3 Object
//! Lock; `.ci/run` exports its URL as `MEDAI_TEST_MOTO_SERVER`. Without it these tests print a
//! notice and skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "integration test"
)]

use aws_sdk_s3::types::ObjectLockMode;
use medai_core::config::{RetentionMode, S3SinkConfig};
use medai_core::{Clock as _, SystemClock};
use medai_kms::aws::StaticCredentials;
use medai_kms::sink::s3::S3Sink;
use medai_kms::sink::{object_name, CheckpointSink};
use std::time::Duration;

fn moto() -> Option<String> {
    match std::env::var("MEDAI_TEST_MOTO_SERVER") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "MEDAI_TEST_MOTO_SERVER is not set: skipping the S3 sink test (.ci/run sets it)"
            );
            None
        }
    }
}

fn creds() -> StaticCredentials {
    StaticCredentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".to_owned().into(),
    }
}

fn config(endpoint: &str, bucket: &str, mode: RetentionMode) -> S3SinkConfig {
    S3SinkConfig {
        bucket: bucket.into(),
        prefix: "audit/cp/".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        force_path_style: true,
        retention_mode: mode,
        retention_days: 30,
    }
}

async fn sink(endpoint: &str, bucket: &str, mode: RetentionMode) -> S3Sink {
    S3Sink::connect(
        &config(endpoint, bucket, mode),
        Duration::from_secs(10),
        Some(creds()),
    )
    .await
    .unwrap()
}

fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{name}-{}-{}-{n}", std::process::id(), SystemClock.now())
}

#[tokio::test]
async fn checkpoints_are_written_with_object_lock_and_read_back() {
    let Some(url) = moto() else { return };
    let bucket = unique("medai-locked");
    let s = sink(&url, &bucket, RetentionMode::Compliance).await;
    s.client()
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    s.check_lock().await.unwrap();

    let note1 = "medai.local/audit\n5\nAAAA\n\n— medai.local/audit sig1\n";
    let note2 = "medai.local/audit\n9\nBBBB\n\n— medai.local/audit sig2\n";
    let at = s.put(5, note1).await.unwrap();
    assert_eq!(
        at,
        format!("s3://{bucket}/audit/cp/checkpoint-0000000000000005.txt")
    );
    s.put(9, note2).await.unwrap();
    // Writing the same size again (a retry) keeps the first object and is not an error.
    s.put(5, "something else").await.unwrap();

    let back = s.read_all().await.unwrap();
    assert_eq!(
        back,
        vec![
            (object_name("audit/cp/", 5), note1.to_owned()),
            (object_name("audit/cp/", 9), note2.to_owned()),
        ]
    );

    // The object carries its retention: COMPLIANCE until about 30 days from now.
    let key = object_name("audit/cp/", 5);
    let head = s
        .client()
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    // (moto answers GetObjectRetention with the object body; HEAD carries the same fields.)
    let until = head.object_lock_retain_until_date().unwrap().secs();
    let now = SystemClock.now();
    assert!(
        (until - (now + 30 * 86_400)).abs() < 600,
        "retain until {until}, now {now}"
    );

    // Deleting the locked version is refused.
    let version = head.version_id().unwrap().to_owned();
    let del = s
        .client()
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .version_id(&version)
        .send()
        .await;
    assert!(del.is_err(), "a locked checkpoint version was deleted");
    let still = s
        .client()
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .version_id(&version)
        .send()
        .await
        .unwrap();
    let body = still.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], note1.as_bytes());
}

#[tokio::test]
async fn a_bucket_without_object_lock_or_a_missing_bucket_is_refused() {
    let Some(url) = moto() else { return };
    let bucket = unique("medai-unlocked");
    let s = sink(&url, &bucket, RetentionMode::Governance).await;
    let e = s.check_lock().await.unwrap_err().to_string();
    assert!(e.contains(&bucket) && e.contains("Object Lock"), "{e}");
    s.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let e = s.check_lock().await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("s3://{bucket}/audit/cp/")) && e.contains("Object Lock"),
        "{e}"
    );

    // Governance mode is written as such.
    let locked = unique("medai-governance");
    let g = sink(&url, &locked, RetentionMode::Governance).await;
    g.client()
        .create_bucket()
        .bucket(&locked)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    g.check_lock().await.unwrap();
    g.put(1, "n\n").await.unwrap();
    let head = g
        .client()
        .head_object()
        .bucket(&locked)
        .key(object_name("audit/cp/", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_not_a_hang() {
    let mut c = config("http://127.0.0.1:9", "medai-x", RetentionMode::Compliance);
    c.retention_days = 1;
    let s = S3Sink::connect(&c, Duration::from_millis(500), Some(creds()))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = s.put(1, "n").await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        e.contains("s3://medai-x/audit/cp/") && e.contains("PutObject"),
        "{e}"
    );
}
