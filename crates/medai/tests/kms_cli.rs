//! The key providers wired into the binary, end to end against moto's KMS-compatible server
//! (`MEDAI_TEST_MOTO_SERVER`, set by `.ci/run`): an installation moves its PHI keys from the
//! local key file to AWS KMS with `medai keys rewrap`, a patient written before still reads,
//! and a fresh installation configured for KMS wraps its keys there from the start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "integration test"
)]

use medai_crypto::envelope::KeyProvider as _;
use std::process::{Command, Output};
use std::time::Duration;

fn moto() -> Option<String> {
    match std::env::var("MEDAI_TEST_MOTO_SERVER") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("MEDAI_TEST_MOTO_SERVER is not set: skipping the KMS end-to-end test (.ci/run sets it)");
            None
        }
    }
}

/// Runs medai on `dir`; `kms` = Some((endpoint, key)) selects AWS KMS through the environment,
/// as an operator's deployment would.
fn medai(dir: &std::path::Path, kms: Option<(&str, &str)>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medai"));
    c.args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("MEDAI_CONFIG")
        .env_remove("MEDAI_DATABASE_URL")
        .env_remove("MEDAI_REDIS_URL")
        // no [llm]: serve without fetching the default model (no network in tests)
        .env("MEDAI_NO_DEFAULT_MODEL", "true")
        .env("MEDAI_LOG_FORMAT", "text")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    if let Some((endpoint, key)) = kms {
        c.env("MEDAI_KEYS__PROVIDER", "aws-kms")
            .env("MEDAI_KEYS__TIMEOUT", "2s")
            .env("MEDAI_KEYS__AWS__KEY_ID", key)
            .env("MEDAI_KEYS__AWS__REGION", "us-east-1")
            .env("MEDAI_KEYS__AWS__ENDPOINT", endpoint);
    }
    c.output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

async fn store(dir: &std::path::Path) -> medai_store::Store {
    let url = format!("sqlite://{}", dir.join("medai.db").display());
    medai_store::Store::connect(&url).await.unwrap()
}

/// `phi_keys` rows as (purpose, version, provider).
fn phi_keys(dir: &std::path::Path) -> Vec<(String, i64, String)> {
    run(async {
        let s = store(dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        let rows = sqlx_rows(&mut c).await;
        drop(c);
        s.close().await;
        rows
    })
}

async fn sqlx_rows(c: &mut sqlx::AnyConnection) -> Vec<(String, i64, String)> {
    sqlx::query_as("SELECT purpose, version, provider FROM phi_keys ORDER BY purpose, version")
        .fetch_all(c)
        .await
        .unwrap()
}

fn aws(endpoint: &str, key: &str) -> medai_kms::aws::AwsKms {
    run(medai_kms::aws::AwsKms::connect_with(
        &medai_core::config::AwsKmsConfig {
            key_id: key.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.into()),
        },
        Duration::from_secs(10),
        Some(medai_kms::aws::StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".to_owned().into(),
        }),
    ))
    .unwrap()
}

fn new_key(endpoint: &str) -> String {
    let admin = aws(endpoint, "unused");
    let out = run(admin.client().create_key().send()).unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_owned()
}

/// The patient's family name, read the way the server reads it: keys unwrapped by KMS only
/// (no local key file behind it).
fn family_name(dir: &std::path::Path, endpoint: &str, key: &str, id: &str) -> String {
    let kms = aws(endpoint, key);
    let provider = medai_kms::ConfiguredProvider::new(Box::new(kms), None);
    run(async {
        let s = store(dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        let phi = medai_store::phi_keys::load_or_init(&mut c, &provider, 1)
            .await
            .unwrap();
        let p = medai_store::patients::get(&mut c, &phi, id)
            .await
            .unwrap()
            .unwrap();
        drop(c);
        s.close().await;
        p.demographics.family_name
    })
}

/// Starts `medai serve` on a fresh data directory with AWS KMS configured, waits until it
/// serves, and stops it with SIGTERM.
fn serve_until_listening(dir: &std::path::Path, endpoint: &str, key: &str) {
    use std::io::{BufRead as _, BufReader};
    let mut c = Command::new(env!("CARGO_BIN_EXE_medai"));
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .args(["--data-dir", dir.to_str().unwrap()])
    .env_remove("MEDAI_CONFIG")
    .env_remove("MEDAI_DATABASE_URL")
    .env_remove("MEDAI_REDIS_URL")
    // no [llm]: serve without fetching the default model (no network in tests)
    .env("MEDAI_NO_DEFAULT_MODEL", "true")
    .env("MEDAI_LOG_FORMAT", "json")
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("MEDAI_KEYS__PROVIDER", "aws-kms")
    .env("MEDAI_KEYS__AWS__KEY_ID", key)
    .env("MEDAI_KEYS__AWS__REGION", "us-east-1")
    .env("MEDAI_KEYS__AWS__ENDPOINT", endpoint)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut serving = false;
    for line in lines.by_ref().map_while(Result::ok) {
        if line.contains("\"medai serving\"") {
            serving = true;
            break;
        }
    }
    assert!(serving, "medai serve did not start");
    // Keep draining its log so the shutdown messages have somewhere to go.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
    drain.join().unwrap();
}

#[test]
fn keys_move_from_the_local_file_to_aws_kms_and_patients_stay_readable() {
    let Some(url) = moto() else { return };
    let key = new_key(&url);
    let kms = Some((url.as_str(), key.as_str()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    // An installation on the local key file, with a patient.
    assert!(medai(&dir, None, &["init"]).status.success());
    run(async {
        let s = store(&dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        medai_store::testkit::execute(
            &mut c,
            "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex, \
             created_at, updated_at) VALUES ('p-1', 'MRN-77', 'Ada', 'Lovelace', '1950-02-03', \
             'female', 1, 1)",
        )
        .await
        .unwrap();
        drop(c);
        s.close().await;
    });
    let o = medai(&dir, None, &["migrate"]);
    assert!(out(&o).contains("encrypted 1 patient row(s)"), "{o:?}");
    assert!(phi_keys(&dir).iter().all(|k| k.2 == "local-file"));

    // KMS configured, keys not yet moved: everything still unwraps (the local file keeps its
    // keys), and status says how to move them.
    let o = medai(&dir, kms, &["keys", "status"]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).contains("configured provider: aws-kms"), "{o:?}");
    assert!(out(&o).contains("`medai keys rewrap` moves them"), "{o:?}");

    let o = medai(&dir, kms, &["keys", "rewrap"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out(&o).contains("2 PHI key(s) re-wrapped by aws-kms"),
        "{o:?}"
    );
    let keys = phi_keys(&dir);
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.2 == "aws-kms"), "{keys:?}");
    let o = medai(&dir, kms, &["keys", "status"]);
    assert!(o.status.success(), "{o:?}");
    let data = out(&o)
        .lines()
        .find(|l| l.starts_with("data "))
        .unwrap()
        .to_owned();
    assert!(data.contains("aws-kms") && data.contains(" yes "), "{data}");
    assert!(!out(&o).contains("rewrap"), "{o:?}");

    // The patient written before the move reads with KMS alone.
    assert_eq!(family_name(&dir, &url, &key, "p-1"), "Lovelace");
    // The local key file no longer unwraps PHI keys: without KMS configured, status says so.
    let o = medai(&dir, None, &["keys", "status"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(out(&o).contains(" NO "), "{o:?}");
    // A rotation under KMS wraps the new key there and re-encrypts the row under it.
    let o = medai(&dir, kms, &["keys", "rotate", "--reencrypt"]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).contains("re-encrypted 1 row(s)"), "{o:?}");
    let keys = phi_keys(&dir);
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.2 == "aws-kms"), "{keys:?}");
    assert_eq!(family_name(&dir, &url, &key, "p-1"), "Lovelace");
    // Keys recorded without a key id (wrapped before key ids were recorded) are unwrapped by
    // the configured key; another key configured then does not unwrap them, and start-up
    // refuses with an error naming the provider (and records it in the audit log). (With the
    // key id recorded, the key that wrapped each one unwraps it whatever is configured.)
    let other = new_key(&url);
    run(async {
        let s = store(&dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        medai_store::testkit::execute(&mut c, "UPDATE phi_keys SET key_id = NULL")
            .await
            .unwrap();
        drop(c);
        s.close().await;
    });
    let o = medai(&dir, Some((&url, &other)), &["migrate"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        err(&o).contains("aws-kms") && err(&o).contains("permission denied"),
        "{o:?}"
    );
    let failures: i64 = run(async {
        let s = store(&dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'phi.key_unwrap_failed'",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        drop(c);
        s.close().await;
        n
    });
    assert_eq!(failures, 1);
}

#[test]
fn serve_on_aws_kms_wraps_a_fresh_installations_keys_there_and_a_silent_kms_times_out() {
    let Some(url) = moto() else { return };
    let key = new_key(&url);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    serve_until_listening(&dir, &url, &key);
    let keys = phi_keys(&dir);
    assert_eq!(
        keys,
        vec![
            ("blind-index".to_owned(), 0, "aws-kms".to_owned()),
            ("data".to_owned(), 1, "aws-kms".to_owned())
        ]
    );
    let provider = aws(&url, &key);
    assert_eq!(provider.name(), "aws-kms");
    // `config check` shows the section, and a bad key id is refused naming the key.
    let o = medai(&dir, Some((&url, &key)), &["config", "check"]);
    assert!(out(&o).contains("provider = \"aws-kms\""), "{o:?}");
    let o = medai(&dir, Some((&url, "has space")), &["config", "check"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("keys.aws.key_id"), "{o:?}");

    // A KMS that accepts connections and never answers: a clear error, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let o = medai(&dir, Some((&endpoint, &key)), &["migrate"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        err(&o).contains("aws-kms") && err(&o).contains("timed out"),
        "{o:?}"
    );
}

/// `phi_keys` rows as (purpose, version, provider, key id).
fn phi_key_ids(dir: &std::path::Path) -> Vec<(String, i64, String, Option<String>)> {
    run(async {
        let s = store(dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        let rows = sqlx::query_as(
            "SELECT purpose, version, provider, key_id FROM phi_keys ORDER BY purpose, version",
        )
        .fetch_all(&mut *c)
        .await
        .unwrap();
        drop(c);
        s.close().await;
        rows
    })
}

#[test]
fn keys_move_from_one_aws_kms_key_to_another_in_one_resumable_step_and_the_old_key_can_go() {
    let Some(url) = moto() else { return };
    let old = new_key(&url);
    let new = new_key(&url);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    // An installation on KMS key `old`, with a patient.
    let o = medai(&dir, Some((&url, &old)), &["init"]);
    assert!(o.status.success(), "{o:?}");
    run(async {
        let s = store(&dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        medai_store::testkit::execute(
            &mut c,
            "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex, \
             created_at, updated_at) VALUES ('p-1', 'MRN-78', 'Grace', 'Hopper', '1906-12-09', \
             'female', 1, 1)",
        )
        .await
        .unwrap();
        drop(c);
        s.close().await;
    });
    let o = medai(&dir, Some((&url, &old)), &["migrate"]);
    assert!(out(&o).contains("encrypted 1 patient row(s)"), "{o:?}");
    let keys = phi_key_ids(&dir);
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.2 == "aws-kms" && k.3.as_deref() == Some(old.as_str())),
        "each key records the KMS key that wraps it: {keys:?}"
    );

    // A move interrupted after its first key: one key under each KMS key. A server still
    // configured with the old key reads keys under the new one (recorded beside them).
    let source = medai_kms::ConfiguredProvider::new(Box::new(aws(&url, &old)), None);
    let target = aws(&url, &new);
    run(async {
        let s = store(&dir).await;
        let mut tx = s.begin().await.unwrap();
        let m = medai_store::phi_keys::move_next(&mut tx, &source, &target)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.from, ("aws-kms".to_owned(), Some(old.clone())));
        tx.commit().await.unwrap();
        s.close().await;
    });
    let keys = phi_key_ids(&dir);
    assert_eq!(
        keys.iter()
            .filter(|k| k.3.as_deref() == Some(new.as_str()))
            .count(),
        1,
        "{keys:?}"
    );
    assert_eq!(family_name(&dir, &url, &old, "p-1"), "Hopper");

    // The operator resumes: one step, configured still with the old key.
    let o = medai(
        &dir,
        Some((&url, &old)),
        &[
            "keys",
            "rewrap",
            "--to-provider",
            "aws-kms",
            "--to-key-id",
            &new,
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(
        out(&o).contains(&format!("1 PHI key(s) moved to aws-kms key {new}")),
        "{o:?}"
    );
    let keys = phi_key_ids(&dir);
    assert!(
        keys.iter()
            .all(|k| k.2 == "aws-kms" && k.3.as_deref() == Some(new.as_str())),
        "{keys:?}"
    );
    // Nothing left: running it again moves nothing.
    let o = medai(
        &dir,
        Some((&url, &old)),
        &[
            "keys",
            "rewrap",
            "--to-provider",
            "aws-kms",
            "--to-key-id",
            &new,
        ],
    );
    assert!(out(&o).contains("0 PHI key(s) moved"), "{o:?}");
    // The move is audited, naming both keys.
    let moves: Vec<(String,)> = run(async {
        let s = store(&dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        let rows = sqlx::query_as("SELECT detail FROM audit_events WHERE action = 'keys.move'")
            .fetch_all(&mut *c)
            .await
            .unwrap();
        drop(c);
        s.close().await;
        rows
    });
    assert_eq!(moves.len(), 1);
    assert!(
        moves[0].0.contains(&old) && moves[0].0.contains(&new),
        "{moves:?}"
    );

    // The old key is disabled and scheduled for deletion: the patient still reads under the
    // new key, and status with the new key configured is clean.
    let admin = aws(&url, &old);
    let old_uuid = old.rsplit('/').next().unwrap();
    run(admin.client().disable_key().key_id(old_uuid).send()).unwrap();
    run(admin
        .client()
        .schedule_key_deletion()
        .key_id(old_uuid)
        .pending_window_in_days(7)
        .send())
    .unwrap();
    // moto does not refuse a disabled key, so check what real KMS relies on: every stored
    // wrapped key is a ciphertext of the new key (Decrypt uses the key inside the ciphertext).
    let rows: Vec<(String, i64, Vec<u8>)> = run(async {
        let s = store(&dir).await;
        let mut c = s.pool().acquire().await.unwrap();
        let rows = sqlx::query_as("SELECT purpose, version, wrapped FROM phi_keys")
            .fetch_all(&mut *c)
            .await
            .unwrap();
        drop(c);
        s.close().await;
        rows
    });
    for (purpose, version, wrapped) in rows {
        let out = run(admin
            .client()
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
            .encryption_context("medai:purpose", purpose)
            .encryption_context("medai:key-version", version.to_string())
            .send())
        .unwrap();
        assert_eq!(
            out.key_id(),
            Some(new.as_str()),
            "wrapped under the new key"
        );
    }
    assert_eq!(family_name(&dir, &url, &new, "p-1"), "Hopper");
    let o = medai(&dir, Some((&url, &new)), &["keys", "status"]);
    assert!(o.status.success(), "{o:?}");
    assert!(!out(&o).contains(" NO "), "{o:?}");
    assert!(out(&o).contains(&format!("[key {new}]")), "{o:?}");

    // Flags are validated.
    let o = medai(&dir, None, &["keys", "rewrap", "--to-provider", "aws-kms"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("--to-key-id"), "{o:?}");
}

/// `medai audit checkpoint` writes to an S3 bucket with Object Lock, `medai audit verify` reads
/// the checkpoints back from it, and a bucket without Object Lock is refused.
#[test]
fn audit_checkpoints_go_to_an_object_locked_s3_bucket_and_verify_reads_them_back() {
    let Some(url) = moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let suffix = medai_store::testkit::unique_prefix()
        .trim_start_matches("medai-test:")
        .trim_end_matches(':')
        .to_owned();
    let (locked, unlocked) = (
        format!("cli-locked-{suffix}"),
        format!("cli-plain-{suffix}"),
    );
    let sink = run(medai_kms::sink::s3::S3Sink::connect(
        &medai_core::config::S3SinkConfig {
            bucket: locked.clone(),
            region: Some("us-east-1".into()),
            endpoint: Some(url.clone()),
            force_path_style: true,
            ..Default::default()
        },
        Duration::from_secs(10),
        Some(medai_kms::aws::StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".to_owned().into(),
        }),
    ))
    .unwrap();
    run(sink
        .client()
        .create_bucket()
        .bucket(&locked)
        .object_lock_enabled_for_bucket(true)
        .send())
    .unwrap();
    run(sink.client().create_bucket().bucket(&unlocked).send()).unwrap();
    let with_s3 = |bucket: &str, args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_medai"));
        c.args(["--data-dir", dir.to_str().unwrap()])
            .args(args)
            .env_remove("MEDAI_CONFIG")
            .env_remove("MEDAI_DATABASE_URL")
            .env("MEDAI_LOG_FORMAT", "text")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("MEDAI_AUDIT__DIRECTORY_SINK", "false")
            .env("MEDAI_AUDIT__S3__BUCKET", bucket)
            .env("MEDAI_AUDIT__S3__REGION", "us-east-1")
            .env("MEDAI_AUDIT__S3__ENDPOINT", &url)
            .env("MEDAI_AUDIT__S3__FORCE_PATH_STYLE", "true")
            .env("MEDAI_AUDIT__S3__RETENTION_DAYS", "3");
        c.output().unwrap()
    };
    assert!(medai(&dir, None, &["init"]).status.success());
    let o = with_s3(&locked, &["audit", "checkpoint"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out(&o).contains(&format!("s3://{locked}/medai-audit/checkpoint-")),
        "{o:?}"
    );
    assert!(
        !dir.join("audit-checkpoints").exists(),
        "the directory sink is off"
    );
    let o = with_s3(&locked, &["audit", "verify"]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).contains("and 1 exported ones"), "{o:?}");
    // The config check prints the sink (endpoints masked like every URL).
    let o = with_s3(&locked, &["config", "check"]);
    assert!(out(&o).contains(&locked), "{o:?}");
    // A bucket without Object Lock is refused before anything is written.
    let o = with_s3(&unlocked, &["audit", "checkpoint"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(err(&o).contains("Object Lock"), "{o:?}");
}
