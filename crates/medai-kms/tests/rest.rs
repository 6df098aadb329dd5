//! The GCP Cloud KMS and Azure Key Vault clients against local HTTP fixtures of those services'
//! documented request and response formats. The fixtures check each request (path, query,
//! bearer token, body fields, associated data) and really encrypt (AES-GCM under a fixture key,
//! with the AAD), so a wrong version, a tampered ciphertext or another key is refused the way
//! the services refuse it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "integration test"
)]

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use medai_core::config::{AzureKeyVaultConfig, GcpKmsConfig};
use medai_crypto::envelope::{DataKey, KeyProvider};
use medai_crypto::MasterKey;
use medai_kms::azure::AzureKeyVault;
use medai_kms::gcp::GcpKms;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GCP_KEY: &str = "projects/p1/locations/global/keyRings/ring/cryptoKeys/phi";
const GCP_KEY_2: &str = "projects/p1/locations/global/keyRings/ring/cryptoKeys/phi-2026";
const TOKEN: &str = "ya29.fixture-token-7f3a";

/// How the fixture answers.
const NORMAL: u8 = 0;
const DENY: u8 = 1;
const SLOW: u8 = 2;
const MALFORMED: u8 = 3;
const UNAUTHORIZED: u8 = 4;

#[derive(Clone)]
struct Fixture {
    keys: Arc<HashMap<String, MasterKey>>,
    latest: Arc<Mutex<String>>,
    mode: Arc<AtomicU8>,
    token_calls: Arc<AtomicU32>,
    requests: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl Fixture {
    fn new() -> Self {
        let keys = ["v1", "v2", "v3"]
            .into_iter()
            .map(|v| (v.to_owned(), MasterKey::generate()))
            .collect();
        Self {
            keys: Arc::new(keys),
            latest: Arc::new(Mutex::new("v2".into())),
            mode: Arc::new(AtomicU8::new(NORMAL)),
            token_calls: Arc::new(AtomicU32::new(0)),
            requests: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn last(&self) -> (String, String, Value) {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }

    /// Common checks; `Some(response)` short-circuits.
    async fn gate(&self, headers: &HeaderMap) -> Option<Response> {
        match self.mode.load(Ordering::SeqCst) {
            DENY => {
                return Some(error(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied",
                ))
            }
            UNAUTHORIZED => {
                return Some(error(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "bad token",
                ))
            }
            SLOW => tokio::time::sleep(Duration::from_secs(30)).await,
            MALFORMED => return Some(Json(json!({ "unexpected": true })).into_response()),
            _ => {}
        }
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {TOKEN}") {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "missing token",
            ));
        }
        None
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": status.as_u16(), "status": code, "message": message } })),
    )
        .into_response()
}

fn b64(v: &Value, field: &str) -> Option<Vec<u8>> {
    STANDARD.decode(v[field].as_str()?).ok()
}

/// `POST /v1/{key}:encrypt|decrypt` as Cloud KMS documents them.
async fn gcp(
    State(f): State<Fixture>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    f.requests.lock().unwrap().push((
        rest.clone(),
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body.clone(),
    ));
    if let Some(r) = f.gate(&headers).await {
        return r;
    }
    let Some((key, verb)) = rest.rsplit_once(':') else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    // Two keys of the key ring, each with its own key material.
    let kek = match key {
        GCP_KEY => &f.keys["v1"],
        GCP_KEY_2 => &f.keys["v3"],
        _ => return error(StatusCode::NOT_FOUND, "NOT_FOUND", "CryptoKey not found."),
    };
    let aad = b64(&body, "additionalAuthenticatedData").unwrap_or_default();
    match verb {
        "encrypt" => {
            let Some(plain) = b64(&body, "plaintext") else {
                return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "plaintext");
            };
            Json(json!({
                "name": format!("{key}/cryptoKeyVersions/1"),
                "ciphertext": STANDARD.encode(kek.seal(&plain, &aad)),
                "protectionLevel": "SOFTWARE",
            }))
            .into_response()
        }
        "decrypt" => {
            let Some(ct) = b64(&body, "ciphertext") else {
                return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "ciphertext");
            };
            match kek.open(&ct, &aad) {
                Ok(p) => {
                    Json(json!({ "plaintext": STANDARD.encode(p.as_slice()) })).into_response()
                }
                Err(_) => error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "Decryption failed: the ciphertext is invalid.",
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method"),
    }
}

/// The metadata server's token endpoint.
async fn gcp_token(State(f): State<Fixture>, headers: HeaderMap) -> Response {
    f.token_calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (StatusCode::FORBIDDEN, "missing Metadata-Flavor").into_response();
    }
    Json(json!({ "access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer" }))
        .into_response()
}

/// Azure IMDS's managed identity token endpoint.
async fn azure_token(
    State(f): State<Fixture>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    f.token_calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true")
        || q.get("resource").map(String::as_str) != Some("https://vault.azure.net")
        || q.get("api-version").map(String::as_str) != Some("2018-02-01")
    {
        return (StatusCode::BAD_REQUEST, "bad IMDS request").into_response();
    }
    Json(json!({ "access_token": TOKEN, "expires_in": "3599", "token_type": "Bearer" }))
        .into_response()
}

/// `POST /keys/{name}[/{version}]/wrapkey|unwrapkey?api-version=7.4` as Key Vault documents
/// them.
async fn azure(
    State(f): State<Fixture>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    f.requests.lock().unwrap().push((
        format!(
            "{rest}?api-version={}",
            q.get("api-version").cloned().unwrap_or_default()
        ),
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body.clone(),
    ));
    if let Some(r) = f.gate(&headers).await {
        return r;
    }
    if q.get("api-version").map(String::as_str) != Some("7.4") {
        return error(StatusCode::BAD_REQUEST, "BadParameter", "api-version");
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let (name, version, op) = match parts.as_slice() {
        [name, op] => (*name, f.latest.lock().unwrap().clone(), *op),
        [name, version, op] => (*name, (*version).to_owned(), *op),
        _ => return error(StatusCode::NOT_FOUND, "NotFound", "path"),
    };
    if name != "phi-kek" {
        return error(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            "A key with (name/id) was not found",
        );
    }
    let Some(kek) = f.keys.get(&version) else {
        return error(StatusCode::NOT_FOUND, "KeyNotFound", "no such version");
    };
    if body["alg"] != "RSA-OAEP-256" {
        return error(StatusCode::BAD_REQUEST, "BadParameter", "alg");
    }
    let Some(value) = body["value"]
        .as_str()
        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
    else {
        return error(StatusCode::BAD_REQUEST, "BadParameter", "value");
    };
    let kid = format!("https://fixture.vault.azure.net/keys/{name}/{version}");
    match op {
        "wrapkey" => {
            Json(json!({ "kid": kid, "value": URL_SAFE_NO_PAD.encode(kek.seal(&value, b"")) }))
                .into_response()
        }
        "unwrapkey" => match kek.open(&value, b"") {
            Ok(p) => Json(json!({ "kid": kid, "value": URL_SAFE_NO_PAD.encode(p.as_slice()) }))
                .into_response(),
            Err(_) => error(StatusCode::BAD_REQUEST, "BadParameter", "Bad Request"),
        },
        _ => error(StatusCode::NOT_FOUND, "NotFound", "op"),
    }
}

async fn start() -> (Fixture, String) {
    let f = Fixture::new();
    let app = Router::new()
        .route("/v1/{*rest}", post(gcp))
        .route("/keys/{*rest}", post(azure))
        .route("/gcp-token", get(gcp_token))
        .route("/metadata/identity/oauth2/token", get(azure_token))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (f, format!("http://{addr}"))
}

fn token_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), format!("{TOKEN}\n")).unwrap();
    f
}

fn gcp_config(base: &str, token: Option<&std::path::Path>) -> GcpKmsConfig {
    GcpKmsConfig {
        key_name: GCP_KEY.into(),
        endpoint: Some(base.to_owned()),
        token_file: token.map(Into::into),
        token_url: Some(format!("{base}/gcp-token")),
    }
}

fn azure_config(
    base: &str,
    version: Option<&str>,
    token: Option<&std::path::Path>,
) -> AzureKeyVaultConfig {
    AzureKeyVaultConfig {
        vault_url: base.to_owned(),
        key_name: "phi-kek".into(),
        key_version: version.map(Into::into),
        client_id: None,
        token_file: token.map(Into::into),
        token_url: Some(format!("{base}/metadata/identity/oauth2/token")),
    }
}

/// The same data key comes back: a field sealed under the original opens under the unwrapped
/// one.
fn same_key(a: DataKey, b: DataKey) -> bool {
    a.expose() == b.expose()
}

/// Round trip, binding to version and purpose, tampering and another key, shared by both
/// providers.
async fn round_trip(p: &dyn KeyProvider, f: &Fixture) {
    let dek = DataKey::generate();
    let copy = DataKey::from_bytes(*dek.expose());
    let wrapped = p.wrap(&dek, 3).await.unwrap();
    assert!(
        !wrapped.windows(32).any(|w| w == dek.expose()),
        "the wrapped form does not hold the key"
    );
    let (_, auth, body) = f.last();
    assert_eq!(auth, format!("Bearer {TOKEN}"));
    assert!(!body.to_string().contains(TOKEN));
    assert!(same_key(p.unwrap(&wrapped, 3).await.unwrap(), copy));
    // Bound to its version and purpose (version 0 is the blind-index key).
    for other in [4, 30, 0] {
        let e = p.unwrap(&wrapped, other).await.unwrap_err().to_string();
        assert!(e.contains(p.name()), "{e}");
    }
    // Tampered.
    let mut bad = wrapped.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = p.unwrap(&bad, 3).await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("key provider {}", p.name())), "{e}");
    // Truncated to nothing.
    assert!(p.unwrap(&[], 3).await.is_err());
}

/// Denied, unauthenticated, malformed and a service that never answers: each a clear error
/// naming the provider, none a hang.
async fn faults(p: &dyn KeyProvider, f: &Fixture) {
    let dek = DataKey::generate();
    let wrapped = p.wrap(&dek, 1).await.unwrap();
    f.set(DENY);
    let e = p.wrap(&dek, 1).await.unwrap_err().to_string();
    assert!(
        e.contains(p.name()) && e.contains("permission denied") && e.contains("403"),
        "{e}"
    );
    let e = p.unwrap(&wrapped, 1).await.unwrap_err().to_string();
    assert!(e.contains("permission denied"), "{e}");
    f.set(UNAUTHORIZED);
    let e = p.unwrap(&wrapped, 1).await.unwrap_err().to_string();
    assert!(e.contains("authentication failed"), "{e}");
    f.set(MALFORMED);
    let e = p.wrap(&dek, 1).await.unwrap_err().to_string();
    assert!(e.contains("malformed response"), "{e}");
    let e = p.unwrap(&wrapped, 1).await.unwrap_err().to_string();
    assert!(e.contains("malformed response"), "{e}");
    f.set(SLOW);
    let r = tokio::time::timeout(Duration::from_secs(15), p.unwrap(&wrapped, 1)).await;
    let e = r
        .expect("the provider's timeout fires, no hang")
        .unwrap_err()
        .to_string();
    assert!(e.contains(p.name()) && e.contains("timed out"), "{e}");
    f.set(NORMAL);
    assert!(same_key(
        p.unwrap(&wrapped, 1).await.unwrap(),
        DataKey::from_bytes(*dek.expose())
    ));
}

#[tokio::test]
async fn gcp_wraps_with_aad_bound_to_version_and_purpose() {
    let (f, base) = start().await;
    let tf = token_file();
    let p = GcpKms::new(&gcp_config(&base, Some(tf.path())), Duration::from_secs(5)).unwrap();
    assert_eq!(p.name(), "gcp-kms");
    let dek = DataKey::generate();
    p.wrap(&dek, 7).await.unwrap();
    let (path, _, body) = f.last();
    assert_eq!(path, format!("{GCP_KEY}:encrypt"));
    assert_eq!(
        STANDARD
            .decode(body["plaintext"].as_str().unwrap())
            .unwrap(),
        dek.expose()
    );
    assert_eq!(
        STANDARD
            .decode(body["additionalAuthenticatedData"].as_str().unwrap())
            .unwrap(),
        b"medai.phi-key.v1;purpose=data;version=7;"
    );
    round_trip(&p, &f).await;
    let (path, _, body) = f.requests.lock().unwrap()[2].clone();
    assert_eq!(path, format!("{GCP_KEY}:decrypt"));
    assert!(body["ciphertext"].is_string() && body["additionalAuthenticatedData"].is_string());
    assert_eq!(
        f.token_calls.load(Ordering::SeqCst),
        0,
        "the token file was used"
    );
    assert!(!format!("{p:?}").contains(TOKEN));
}

#[tokio::test]
async fn gcp_faults_are_clear_errors() {
    let (f, base) = start().await;
    let tf = token_file();
    let p = GcpKms::new(
        &gcp_config(&base, Some(tf.path())),
        Duration::from_millis(400),
    )
    .unwrap();
    faults(&p, &f).await;
    // Another key name: not found.
    let mut cfg = gcp_config(&base, Some(tf.path()));
    cfg.key_name = "projects/p1/locations/global/keyRings/ring/cryptoKeys/other".into();
    let other = GcpKms::new(&cfg, Duration::from_secs(5)).unwrap();
    let e = other
        .wrap(&DataKey::generate(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found") && e.contains("404"), "{e}");
    // A token file that is missing or empty.
    let cfg = gcp_config(&base, Some(std::path::Path::new("/nonexistent/token")));
    let e = GcpKms::new(&cfg, Duration::from_secs(5))
        .unwrap()
        .wrap(&DataKey::generate(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("token file /nonexistent/token"), "{e}");
    std::fs::write(tf.path(), "\n").unwrap();
    let e = p
        .wrap(&DataKey::generate(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("must hold one access token"), "{e}");
    // A service that is not there.
    let gone = GcpKms::new(
        &gcp_config("http://127.0.0.1:9", Some(tf.path())),
        Duration::from_secs(2),
    )
    .unwrap();
    std::fs::write(tf.path(), TOKEN).unwrap();
    let e = gone
        .wrap(&DataKey::generate(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gcp-kms") && e.contains("could not connect"),
        "{e}"
    );
}

#[tokio::test]
async fn gcp_token_from_the_metadata_server_is_fetched_once_and_cached() {
    let (f, base) = start().await;
    let p = GcpKms::new(&gcp_config(&base, None), Duration::from_secs(5)).unwrap();
    let dek = DataKey::generate();
    let w = p.wrap(&dek, 1).await.unwrap();
    p.unwrap(&w, 1).await.unwrap();
    assert_eq!(f.token_calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.last().1, format!("Bearer {TOKEN}"));
}

#[tokio::test]
async fn azure_wraps_with_rsa_oaep_256_and_remembers_the_key_version() {
    let (f, base) = start().await;
    let tf = token_file();
    let p = AzureKeyVault::new(
        &azure_config(&base, None, Some(tf.path())),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(p.name(), "azure-key-vault");
    let dek = DataKey::generate();
    let wrapped = p.wrap(&dek, 2).await.unwrap();
    let (path, _, body) = f.last();
    assert_eq!(
        path, "phi-kek/wrapkey?api-version=7.4",
        "newest version when none is configured"
    );
    assert_eq!(body["alg"], "RSA-OAEP-256");
    let plain = URL_SAFE_NO_PAD
        .decode(body["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        &plain[..plain.len() - 32],
        b"medai.phi-key.v1;purpose=data;version=2;"
    );
    assert_eq!(&plain[plain.len() - 32..], dek.expose());
    // The vault key rotates to v3: the stored key still unwraps with v2, which wrapped it.
    *f.latest.lock().unwrap() = "v3".into();
    assert!(same_key(
        p.unwrap(&wrapped, 2).await.unwrap(),
        DataKey::from_bytes(*dek.expose())
    ));
    assert_eq!(f.last().0, "phi-kek/v2/unwrapkey?api-version=7.4");
    round_trip(&p, &f).await;
    // A configured version is used for wraps.
    let pinned = AzureKeyVault::new(
        &azure_config(&base, Some("v1"), Some(tf.path())),
        Duration::from_secs(5),
    )
    .unwrap();
    let w = pinned.wrap(&dek, 1).await.unwrap();
    assert_eq!(f.last().0, "phi-kek/v1/wrapkey?api-version=7.4");
    assert!(p.unwrap(&w, 1).await.is_ok());
    // A stored wrapped key whose version header is damaged is refused before any request.
    let n = f.requests.lock().unwrap().len();
    let mut bad = w.clone();
    bad[1] = 200;
    let e = p.unwrap(&bad, 1).await.unwrap_err().to_string();
    assert!(e.contains("malformed"), "{e}");
    assert_eq!(f.requests.lock().unwrap().len(), n);
}

#[tokio::test]
async fn azure_faults_are_clear_errors() {
    let (f, base) = start().await;
    let tf = token_file();
    let p = AzureKeyVault::new(
        &azure_config(&base, None, Some(tf.path())),
        Duration::from_millis(400),
    )
    .unwrap();
    faults(&p, &f).await;
    let mut cfg = azure_config(&base, None, Some(tf.path()));
    cfg.key_name = "missing".into();
    let e = AzureKeyVault::new(&cfg, Duration::from_secs(5))
        .unwrap()
        .wrap(&DataKey::generate(), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("azure-key-vault") && e.contains("not found"),
        "{e}"
    );
}

#[tokio::test]
async fn azure_token_from_managed_identity_is_fetched_once() {
    let (f, base) = start().await;
    let p = AzureKeyVault::new(&azure_config(&base, None, None), Duration::from_secs(5)).unwrap();
    let w = p.wrap(&DataKey::generate(), 1).await.unwrap();
    p.unwrap(&w, 1).await.unwrap();
    assert_eq!(f.token_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn configured_provider_keeps_the_local_file_for_keys_it_wrapped() {
    let (f, base) = start().await;
    let tf = token_file();
    let local = MasterKey::generate();
    let dek = DataKey::generate();
    let by_local = local.wrap(&dek, 1).await.unwrap();
    let kms = GcpKms::new(&gcp_config(&base, Some(tf.path())), Duration::from_secs(5)).unwrap();
    let p = medai_kms::ConfiguredProvider::new(Box::new(kms), Some(local));
    assert_eq!(p.name(), "gcp-kms");
    assert!(same_key(
        p.unwrap_from("local-file", &by_local, 1).await.unwrap(),
        DataKey::from_bytes(*dek.expose())
    ));
    let by_kms = p.wrap(&dek, 1).await.unwrap();
    assert!(p.unwrap_from("gcp-kms", &by_kms, 1).await.is_ok());
    let e = p
        .unwrap_from("azure-key-vault", &by_kms, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not configured"), "{e}");
    assert_eq!(
        format!("{p:?}"),
        "ConfiguredProvider { provider: \"gcp-kms\", local_file_fallback: true }"
    );
    drop(f);
}

#[tokio::test]
async fn gcp_unwraps_a_key_recorded_under_another_key_of_the_ring_with_that_key() {
    let (f, base) = start().await;
    let tf = token_file();
    let old = GcpKms::new(&gcp_config(&base, Some(tf.path())), Duration::from_secs(5)).unwrap();
    let mut cfg = gcp_config(&base, Some(tf.path()));
    cfg.key_name = GCP_KEY_2.into();
    let new = GcpKms::new(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(old.key_id(), Some(GCP_KEY));
    assert_eq!(new.key_id(), Some(GCP_KEY_2));
    let dek = DataKey::generate();
    let wrapped = old.wrap(&dek, 2).await.unwrap();
    // The configured key cannot open it; the recorded key can, through the same client.
    assert!(new.unwrap(&wrapped, 2).await.is_err());
    let back = new
        .unwrap_recorded("gcp-kms", Some(GCP_KEY), &wrapped, 2)
        .await
        .unwrap();
    assert_eq!(back.expose(), dek.expose());
    let (path, _, _) = f.last();
    assert_eq!(path, format!("{GCP_KEY}:decrypt"));
    // Recorded as another provider's, or bound to another version: refused.
    assert!(new
        .unwrap_recorded("aws-kms", Some(GCP_KEY), &wrapped, 2)
        .await
        .is_err());
    assert!(new
        .unwrap_recorded("gcp-kms", Some(GCP_KEY), &wrapped, 3)
        .await
        .is_err());
}
