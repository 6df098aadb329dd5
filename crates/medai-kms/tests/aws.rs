//! The AWS KMS client (official SDK) against a real KMS-compatible server: moto's, whose URL
//! `.ci/run` exports as `MEDAI_TEST_MOTO_SERVER`. Without it these tests print a notice and
//! skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "integration test"
)]

use medai_core::config::AwsKmsConfig;
use medai_crypto::envelope::{DataKey, KeyProvider};
use medai_kms::aws::{AwsKms, StaticCredentials};
use std::time::Duration;

fn moto() -> Option<String> {
    match std::env::var("MEDAI_TEST_MOTO_SERVER") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "MEDAI_TEST_MOTO_SERVER is not set: skipping the AWS KMS test (.ci/run sets it)"
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

fn config(endpoint: &str, key_id: &str) -> AwsKmsConfig {
    AwsKmsConfig {
        key_id: key_id.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
    }
}

async fn provider(endpoint: &str, key_id: &str) -> AwsKms {
    AwsKms::connect_with(
        &config(endpoint, key_id),
        Duration::from_secs(10),
        Some(creds()),
    )
    .await
    .unwrap()
}

/// A fresh symmetric key on the server; returns its ARN and id.
async fn new_key(endpoint: &str) -> (String, String) {
    let admin = provider(endpoint, "unused").await;
    let out = admin
        .client()
        .create_key()
        .description("medai test key")
        .send()
        .await
        .unwrap();
    let meta = out.key_metadata().unwrap();
    (meta.arn().unwrap().to_owned(), meta.key_id().to_owned())
}

#[tokio::test]
async fn aws_kms_wraps_with_an_encryption_context_bound_to_version_and_purpose() {
    let Some(url) = moto() else { return };
    let (arn, id) = new_key(&url).await;
    let p = provider(&url, &arn).await;
    assert_eq!(p.name(), "aws-kms");
    let dek = DataKey::generate();
    let wrapped = p.wrap(&dek, 3).await.unwrap();
    assert!(!wrapped.windows(32).any(|w| w == dek.expose()));
    let back = p.unwrap(&wrapped, 3).await.unwrap();
    assert_eq!(back.expose(), dek.expose());
    // The encryption context binds version and purpose (0 = blind-index key).
    for other in [4, 0] {
        let e = p.unwrap(&wrapped, other).await.unwrap_err().to_string();
        assert!(
            e.contains("aws-kms") && e.contains("InvalidCiphertextException"),
            "{e}"
        );
    }
    // What KMS itself decrypts with the right context is our key; with none, nothing.
    let raw = p
        .client()
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped.clone()))
        .send()
        .await;
    assert!(raw.is_err(), "the context is required");
    // Tampered.
    let mut bad = wrapped.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = p.unwrap(&bad, 3).await.unwrap_err().to_string();
    assert!(e.contains("aws-kms"), "{e}");
    // Another key configured: refused (access denied by the server).
    let other = provider(&url, &new_key(&url).await.0).await;
    let e = other.unwrap(&wrapped, 3).await.unwrap_err().to_string();
    assert!(
        e.contains("aws-kms") && e.contains("permission denied"),
        "{e}"
    );
    // An alias works as the key id.
    let alias = format!("alias/medai-test-{id}");
    p.client()
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&id)
        .send()
        .await
        .unwrap();
    let by_alias = provider(&url, &alias).await;
    let w = by_alias.wrap(&dek, 1).await.unwrap();
    assert_eq!(p.unwrap(&w, 1).await.unwrap().expose(), dek.expose());
}

#[tokio::test]
async fn aws_kms_faults_are_clear_errors() {
    let Some(url) = moto() else { return };
    // A key that does not exist.
    let p = provider(
        &url,
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    )
    .await;
    let e = p
        .wrap(&DataKey::generate(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("aws-kms") && e.contains("not found"), "{e}");
    // A key of this account that another key's ciphertext does not belong to (moto does not
    // model disabled keys, so denial is checked with another key in the test above).
    let (arn, _) = new_key(&url).await;
    let p = provider(&url, &arn).await;
    let w = p.wrap(&DataKey::generate(), 1).await.unwrap();
    assert!(p.unwrap(&w, 1).await.is_ok());
    // A server that accepts connections and never answers: a timeout naming the provider.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let hung = AwsKms::connect_with(
        &config(&format!("http://{addr}"), &arn),
        Duration::from_millis(500),
        Some(creds()),
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), hung.unwrap(&w, 1)).await;
    let e = r.expect("no hang").unwrap_err().to_string();
    assert!(e.contains("aws-kms") && e.contains("timed out"), "{e}");
    drop(silent);
    // No region anywhere.
    let mut c = config(&url, &arn);
    c.region = None;
    let r = temp_env_free_region(&c).await;
    if let Err(e) = r {
        assert!(e.contains("region"), "{e}");
    }
}

/// Connecting without a region fails naming it, unless the environment supplies one.
async fn temp_env_free_region(c: &AwsKmsConfig) -> Result<(), String> {
    if std::env::var_os("AWS_REGION").is_some() || std::env::var_os("AWS_DEFAULT_REGION").is_some()
    {
        return Ok(());
    }
    AwsKms::connect_with(c, Duration::from_secs(2), Some(creds()))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
