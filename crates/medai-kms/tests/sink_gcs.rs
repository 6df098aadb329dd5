//! The Cloud Storage checkpoint sink against a local fixture of the JSON API as Google
//! documents it: bucket metadata (`retentionPolicy`, `objectRetention`), multipart uploads
//! (`uploadType=multipart`, a JSON metadata part and a media part, `ifGenerationMatch=0`),
//! listing with `prefix` and `pageToken`, and `alt=media` downloads. The fixture checks path,
//! query, bearer token and body, and keeps objects so they can be read back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "integration test"
)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medai_core::config::GcsSinkConfig;
use medai_kms::sink::gcs::GcsSink;
use medai_kms::sink::{object_name, CheckpointSink};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "ya29.storage-fixture-token";
const BUCKET: &str = "medai-audit-bucket";

#[derive(Clone, Default)]
struct Fixture {
    /// The bucket resource `GET /storage/v1/b/{bucket}` returns.
    bucket: Arc<Mutex<Value>>,
    /// name -> (metadata part, media)
    objects: Arc<Mutex<BTreeMap<String, (Value, String)>>>,
    uploads: Arc<Mutex<u32>>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": status.as_u16(), "message": message } })),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> Option<Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (auth != format!("Bearer {TOKEN}"))
        .then(|| error(StatusCode::UNAUTHORIZED, "Invalid Credentials"))
}

async fn get_bucket(
    State(f): State<Fixture>,
    Path(bucket): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = authorized(&headers) {
        return r;
    }
    if bucket != BUCKET {
        return error(
            StatusCode::NOT_FOUND,
            "The specified bucket does not exist.",
        );
    }
    Json(f.bucket.lock().unwrap().clone()).into_response()
}

/// Splits a `multipart/related` body into its parts (headers, content).
fn parts(body: &str, boundary: &str) -> Option<Vec<(String, String)>> {
    let delim = format!("--{boundary}");
    let rest = body.strip_prefix(&format!("{delim}\r\n"))?;
    let rest = rest.strip_suffix(&format!("\r\n{delim}--\r\n"))?;
    rest.split(&format!("\r\n{delim}\r\n"))
        .map(|p| {
            p.split_once("\r\n\r\n")
                .map(|(h, c)| (h.to_owned(), c.to_owned()))
        })
        .collect()
}

async fn upload(
    State(f): State<Fixture>,
    Path(bucket): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = authorized(&headers) {
        return r;
    }
    if bucket != BUCKET {
        return error(
            StatusCode::NOT_FOUND,
            "The specified bucket does not exist.",
        );
    }
    if q.get("uploadType").map(String::as_str) != Some("multipart") {
        return error(StatusCode::BAD_REQUEST, "uploadType must be multipart");
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = ct.strip_prefix("multipart/related; boundary=") else {
        return error(StatusCode::BAD_REQUEST, "expected multipart/related");
    };
    let text = String::from_utf8(body.to_vec()).unwrap();
    let Some(p) = parts(&text, boundary) else {
        return error(StatusCode::BAD_REQUEST, "malformed multipart body");
    };
    if p.len() != 2 || !p[0].0.starts_with("Content-Type: application/json") {
        return error(StatusCode::BAD_REQUEST, "expected metadata then media");
    }
    let Ok(meta) = serde_json::from_str::<Value>(&p[0].1) else {
        return error(StatusCode::BAD_REQUEST, "metadata is not JSON");
    };
    let Some(name) = meta["name"].as_str().map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "metadata has no name");
    };
    let bucket_meta = f.bucket.lock().unwrap().clone();
    if meta.get("retention").is_some()
        && bucket_meta["objectRetention"]["mode"].as_str() != Some("Enabled")
    {
        return error(
            StatusCode::BAD_REQUEST,
            "object retention is not enabled on this bucket",
        );
    }
    *f.uploads.lock().unwrap() += 1;
    let mut objects = f.objects.lock().unwrap();
    if q.get("ifGenerationMatch").map(String::as_str) == Some("0") && objects.contains_key(&name) {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "At least one of the pre-conditions you specified did not hold.",
        );
    }
    objects.insert(name.clone(), (meta.clone(), p[1].1.clone()));
    Json(
        json!({ "kind": "storage#object", "bucket": BUCKET, "name": name,
                 "size": p[1].1.len().to_string(), "generation": "1",
                 "retention": meta.get("retention") }),
    )
    .into_response()
}

async fn list(
    State(f): State<Fixture>,
    Path(bucket): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = authorized(&headers) {
        return r;
    }
    if bucket != BUCKET {
        return error(
            StatusCode::NOT_FOUND,
            "The specified bucket does not exist.",
        );
    }
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let start: usize = q.get("pageToken").map_or(0, |t| t.parse().unwrap());
    let names: Vec<(String, usize)> = f
        .objects
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .map(|(n, (_, media))| (n.clone(), media.len()))
        .collect();
    // Pages of two, to exercise pageToken.
    let page: Vec<Value> = names
        .iter()
        .skip(start)
        .take(2)
        .map(|(n, len)| json!({ "kind": "storage#object", "name": n, "size": len.to_string() }))
        .collect();
    let mut out = json!({ "kind": "storage#objects", "items": page });
    if start + 2 < names.len() {
        out["nextPageToken"] = json!((start + 2).to_string());
    }
    Json(out).into_response()
}

async fn download(
    State(f): State<Fixture>,
    Path((bucket, object)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = authorized(&headers) {
        return r;
    }
    if bucket != BUCKET || q.get("alt").map(String::as_str) != Some("media") {
        return error(StatusCode::BAD_REQUEST, "expected alt=media");
    }
    match f.objects.lock().unwrap().get(&object) {
        Some((_, media)) => media.clone().into_response(),
        None => error(StatusCode::NOT_FOUND, "No such object"),
    }
}

async fn serve(f: Fixture) -> String {
    let app = Router::new()
        .route("/storage/v1/b/{bucket}", get(get_bucket))
        .route("/upload/storage/v1/b/{bucket}/o", post(upload))
        .route("/storage/v1/b/{bucket}/o", get(list))
        .route("/storage/v1/b/{bucket}/o/{object}", get(download))
        .with_state(f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn config(endpoint: &str, token_file: &std::path::Path, days: Option<u32>) -> GcsSinkConfig {
    GcsSinkConfig {
        bucket: BUCKET.into(),
        prefix: "prod/checkpoints/".into(),
        retention_days: days,
        endpoint: Some(endpoint.into()),
        token_file: Some(token_file.into()),
        token_url: None,
    }
}

#[tokio::test]
async fn gcs_sink_requires_a_locked_bucket_and_writes_objects_that_read_back() {
    let f = Fixture::default();
    let url = serve(f.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let sink = GcsSink::new(&config(&url, &token, None), Duration::from_secs(5)).unwrap();

    // No retention policy, then an unlocked one: refused.
    *f.bucket.lock().unwrap() = json!({ "name": BUCKET });
    let e = sink.check_lock().await.unwrap_err().to_string();
    assert!(
        e.contains("gs://medai-audit-bucket/prod/checkpoints/") && e.contains("locked retention"),
        "{e}"
    );
    *f.bucket.lock().unwrap() = json!({ "name": BUCKET, "retentionPolicy": { "retentionPeriod": "189216000", "isLocked": false } });
    assert!(sink.check_lock().await.is_err());
    *f.bucket.lock().unwrap() = json!({ "name": BUCKET, "retentionPolicy": { "retentionPeriod": "189216000", "isLocked": true } });
    sink.check_lock().await.unwrap();

    let notes: Vec<(u64, String)> = (1..=5)
        .map(|i| {
            (
                i * 7,
                format!("origin\n{}\nroot{i}\n\n— origin sig{i}\n", i * 7),
            )
        })
        .collect();
    for (size, note) in &notes {
        let at = sink.put(*size, note).await.unwrap();
        assert_eq!(
            at,
            format!("gs://{BUCKET}/{}", object_name("prod/checkpoints/", *size))
        );
    }
    // The bucket policy locks them; no per-object retention is sent.
    let stored = f.objects.lock().unwrap().clone();
    let (meta, media) = &stored[&object_name("prod/checkpoints/", 7)];
    assert_eq!(media, &notes[0].1);
    assert!(meta.get("retention").is_none(), "{meta}");
    assert_eq!(meta["contentType"], "text/plain; charset=utf-8");
    // A retry of the same size is answered 412 and keeps the first object.
    sink.put(7, "other").await.unwrap();
    assert_eq!(
        f.objects.lock().unwrap()[&object_name("prod/checkpoints/", 7)].1,
        notes[0].1
    );

    // An object outside the prefix, or not a checkpoint, is not read back.
    f.objects
        .lock()
        .unwrap()
        .insert("prod/other.txt".into(), (json!({}), "x".into()));
    f.objects
        .lock()
        .unwrap()
        .insert("elsewhere/checkpoint-1.txt".into(), (json!({}), "x".into()));
    let back = sink.read_all().await.unwrap();
    let want: Vec<(String, String)> = notes
        .iter()
        .map(|(s, n)| (object_name("prod/checkpoints/", *s), n.clone()))
        .collect();
    assert_eq!(back, want, "five checkpoints over three pages");

    // A wrong token is refused with a clear error.
    std::fs::write(&token, "ya29.wrong\n").unwrap();
    let e = sink.put(99, "n").await.unwrap_err().to_string();
    assert!(
        e.contains("authentication failed") && e.contains("401"),
        "{e}"
    );
    assert!(!e.contains("ya29"), "the token is never echoed: {e}");
}

#[tokio::test]
async fn gcs_per_object_retention_is_locked_until_now_plus_the_configured_days() {
    let f = Fixture::default();
    let url = serve(f.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let sink = GcsSink::new(&config(&url, &token, Some(10)), Duration::from_secs(5)).unwrap();
    // A locked bucket policy is not enough here: object retention must be enabled.
    *f.bucket.lock().unwrap() = json!({ "name": BUCKET, "retentionPolicy": { "retentionPeriod": "100", "isLocked": true } });
    let e = sink.check_lock().await.unwrap_err().to_string();
    assert!(e.contains("object retention"), "{e}");
    *f.bucket.lock().unwrap() = json!({ "name": BUCKET, "objectRetention": { "mode": "Enabled" } });
    sink.check_lock().await.unwrap();
    sink.put(3, "origin\n3\nroot\n").await.unwrap();
    let (meta, _) = f.objects.lock().unwrap()[&object_name("prod/checkpoints/", 3)].clone();
    assert_eq!(meta["retention"]["mode"], "Locked");
    let until = time::OffsetDateTime::parse(
        meta["retention"]["retainUntilTime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expected =
        time::OffsetDateTime::from_unix_timestamp(medai_core::Clock::now(&medai_core::SystemClock))
            .unwrap()
            + time::Duration::days(10);
    assert!(
        (until - expected).abs() < time::Duration::minutes(5),
        "{until}"
    );

    // A missing bucket is a clear error.
    let mut other = config(&url, &token, None);
    other.bucket = "no-such-bucket".into();
    let e = GcsSink::new(&other, Duration::from_secs(5))
        .unwrap()
        .check_lock()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not found") && e.contains("gs://no-such-bucket/"),
        "{e}"
    );
    assert_eq!(*f.uploads.lock().unwrap(), 1);
}
