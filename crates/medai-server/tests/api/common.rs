//! `TestApp`: the real router on 127.0.0.1:0 over a fresh database (SQLite, or PostgreSQL when
//! `MEDAI_TEST_POSTGRES_URL` is set) and a session store (in process, or Redis when
//! `MEDAI_TEST_REDIS_URL` is set), with a manual clock so time rules are tested without sleeping.

use medai_core::config::Config;
use medai_core::identity::TotpSecret;
use medai_core::{Clock as _, ManualClock, Role, SystemClock};
use medai_kms::sink::CheckpointSink;
use medai_server::audit_log::Sinks;
use medai_server::bootstrap;
use medai_server::serve::Running;
use medai_server::AppState;
use medai_store::ephemeral::Ephemeral;
use medai_store::testkit::{fresh_database, redis_url, unique_prefix, TestDatabase};
use medai_store::DatabaseKind;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

/// Where sessions live in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    Memory,
    Redis,
}

/// Every (database, session store) combination available here: SQLite with in-process sessions
/// always; PostgreSQL with Redis sessions (or in-process if Redis is not configured) when
/// PostgreSQL is configured.
pub fn setups() -> Vec<(DatabaseKind, Sessions)> {
    let mut v = vec![(DatabaseKind::Sqlite, Sessions::Memory)];
    let redis = if redis_url().is_some() {
        Sessions::Redis
    } else {
        Sessions::Memory
    };
    for kind in medai_store::testkit::backends() {
        if kind == DatabaseKind::Postgres {
            v.push((kind, redis));
        }
    }
    if redis == Sessions::Redis {
        v.push((DatabaseKind::Sqlite, Sessions::Redis));
    }
    v
}

pub struct TestApp {
    pub state: AppState,
    pub clock: ManualClock,
    pub base: String,
    pub metrics_base: String,
    pub setup_token: Option<String>,
    pub running: Option<Running>,
    pub db: Arc<TestDatabase>,
    pub redis_prefix: String,
}

pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

impl TestApp {
    pub async fn start(kind: DatabaseKind, sessions: Sessions) -> TestApp {
        Self::start_with(kind, sessions, test_config()).await
    }

    pub async fn start_with(kind: DatabaseKind, sessions: Sessions, config: Config) -> TestApp {
        Self::start_with_sinks(kind, sessions, config, true, Vec::new()).await
    }

    /// With the given object-storage checkpoint sinks, and the directory sink when
    /// `directory` is true.
    pub async fn start_with_sinks(
        kind: DatabaseKind,
        sessions: Sessions,
        mut config: Config,
        directory: bool,
        objects: Vec<Arc<dyn CheckpointSink>>,
    ) -> TestApp {
        let db = Arc::new(fresh_database(kind).await.unwrap());
        let dir = tempfile::tempdir().unwrap().keep();
        config.data_dir = dir;
        config.database_url = Some(db.url.clone().into());
        Self::start_on(
            db,
            sessions,
            config,
            &unique_prefix(),
            ManualClock::new(SystemClock.now()),
            (directory, objects),
        )
        .await
    }

    /// Another replica on the same database and session store.
    pub async fn replica(&self) -> TestApp {
        let mut config = self.state.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.metrics_listen = "127.0.0.1:0".parse().unwrap();
        let sessions = if self.state.ephemeral.kind() == "redis" {
            Sessions::Redis
        } else {
            Sessions::Memory
        };
        Self::start_on(
            Arc::clone(&self.db),
            sessions,
            config,
            &self.redis_prefix.clone(),
            self.clock.clone(),
            (true, Vec::new()),
        )
        .await
    }

    async fn start_on(
        db: Arc<TestDatabase>,
        sessions: Sessions,
        config: Config,
        prefix: &str,
        clock: ManualClock,
        (directory, objects): (bool, Vec<Arc<dyn CheckpointSink>>),
    ) -> TestApp {
        let sinks = Sinks::new(config.effective_checkpoint_dir(), directory, objects);
        let prepared = bootstrap::prepare(&config, clock.now()).await.unwrap();
        let setup_token = prepared
            .setup_url
            .as_ref()
            .map(|u| u.split_once("token=").unwrap().1.to_owned());
        let ephemeral = match sessions {
            Sessions::Memory => Ephemeral::memory(),
            Sessions::Redis => Ephemeral::redis(&redis_url().unwrap(), None, prefix)
                .await
                .unwrap(),
        };
        let state = bootstrap::state_with_sinks(
            config,
            prepared.store,
            prepared.key,
            ephemeral,
            Arc::new(clock.clone()),
            sinks,
        )
        .unwrap();
        let running = medai_server::serve::start(state.clone()).await.unwrap();
        TestApp {
            base: format!("http://{}", running.addr),
            metrics_base: format!("http://{}", running.metrics_addr),
            state,
            clock,
            setup_token,
            running: Some(running),
            db,
            redis_prefix: prefix.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Moves the clock to the start of the next TOTP step, so a new code is valid.
    pub fn next_totp_step(&self) {
        let now = self.clock.now();
        self.clock.set((now / 30 + 1) * 30);
    }

    pub fn code(&self, secret: &TotpSecret) -> String {
        secret.code_at_step(self.clock.now() / 30)
    }

    /// Completes an enrolment link: password, then TOTP. Returns the TOTP secret and the
    /// recovery codes.
    pub async fn enrol(
        &self,
        token: &str,
        username: Option<&str>,
        password: &str,
    ) -> (TotpSecret, Vec<String>) {
        let c = client();
        let mut body = json!({ "token": token, "password": password });
        if let Some(u) = username {
            body["username"] = json!(u);
        }
        let r = c
            .post(self.url("/api/v1/enrolment/start"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        let challenge: Value = r.json().await.unwrap();
        let secret = secret_from_base32(challenge["totp_secret"].as_str().unwrap());
        let r = c
            .post(self.url("/api/v1/enrolment/finish"))
            .json(&json!({ "token": token, "code": self.code(&secret) }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        let done: Value = r.json().await.unwrap();
        let codes = done["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        self.next_totp_step();
        (secret, codes)
    }

    /// Signs in with password and TOTP; returns the client holding the session cookie.
    pub async fn login(&self, username: &str, password: &str, secret: &TotpSecret) -> Client {
        let c = client();
        let r = c
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        let r = c
            .post(self.url("/api/v1/auth/totp"))
            .json(&json!({ "code": self.code(secret) }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        self.next_totp_step();
        c
    }

    /// The first administrator, through the setup link.
    pub async fn admin(&self) -> Actor {
        let token = self
            .setup_token
            .clone()
            .expect("fresh install has a setup link");
        let (secret, _) = self.enrol(&token, Some("root-admin"), PASSWORD).await;
        let client = self.login("root-admin", PASSWORD, &secret).await;
        let id = me(self, &client).await["user_id"]
            .as_str()
            .unwrap()
            .to_owned();
        Actor { client, id, secret }
    }

    /// A user created by `admin` through the API, enrolled and signed in.
    pub async fn user(&self, admin: &Actor, username: &str, role: Role, teams: &[&str]) -> Actor {
        let r = admin
            .client
            .post(self.url("/api/v1/users"))
            .json(&json!({ "username": username, "role": role }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        let created: Value = r.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        for team in teams {
            let r = admin
                .client
                .put(self.url(&format!("/api/v1/care-teams/{team}/members/{id}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
        }
        if role == Role::Service {
            return Actor {
                client: client(),
                id,
                secret: TotpSecret::generate(),
            };
        }
        let url = created["enrolment_url"].as_str().unwrap();
        let token = url.split_once("token=").unwrap().1;
        let (secret, _) = self.enrol(token, None, PASSWORD).await;
        let client = self.login(username, PASSWORD, &secret).await;
        Actor { client, id, secret }
    }

    pub async fn care_team(&self, admin: &Actor, name: &str) -> String {
        let r = admin
            .client
            .post(self.url("/api/v1/care-teams"))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn patient(
        &self,
        by: &Actor,
        mrn: &str,
        family: &str,
        teams: Option<Vec<String>>,
    ) -> String {
        let mut body = json!({ "mrn": mrn, "given_name": "Test", "family_name": family, "date_of_birth": "1970-03-04", "sex": "female" });
        if let Some(t) = teams {
            body["care_team_ids"] = json!(t);
        }
        let r = by
            .client
            .post(self.url("/api/v1/patients"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Starts a conversation about `patient` as `by`; returns its id.
    pub async fn conversation(&self, by: &Actor, patient: &str, title: &str) -> String {
        let r = by
            .client
            .post(self.url(&format!("/api/v1/patients/{patient}/conversations")))
            .json(&json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Stores an answer in a conversation directly through the store (as the answer path
    /// would), attributed to `model` version `version`; returns the message id.
    pub async fn stored_answer(
        &self,
        conversation: &str,
        text: &str,
        model: &str,
        version: &str,
    ) -> String {
        let mut c = self.state.store.pool().acquire().await.unwrap();
        let phi = self
            .state
            .phi
            .current(&mut c, &*self.state.kek, self.state.now())
            .await
            .unwrap();
        let id = medai_store::new_id();
        let provenance = json!({ "model": { "id": model, "version": version } });
        medai_store::conversations::append_message(
            &mut c,
            &phi,
            &medai_store::conversations::NewMessage {
                id: &id,
                conversation_id: conversation,
                kind: medai_store::conversations::MessageKind::Answer,
                author_id: None,
                body: text,
                provenance: Some(&provenance),
                escalations: &[],
            },
            self.state.now(),
        )
        .await
        .unwrap();
        id
    }

    pub async fn audit(&self, action: &str) -> Vec<medai_store::audit::StoredEvent> {
        let mut c = self.state.store.pool().acquire().await.unwrap();
        let f = medai_store::audit::Filter {
            action: Some(action.into()),
            limit: 10_000,
            ..Default::default()
        };
        medai_store::audit::list(&mut c, &f).await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of one sample (`name{labels}`) in a Prometheus text exposition.
pub fn metric(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .map(|v| v.trim().parse().unwrap())
}

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Actor {
    pub client: Client,
    pub id: String,
    pub secret: TotpSecret,
}

pub fn client() -> Client {
    Client::builder().cookie_store(true).build().unwrap()
}

pub async fn me(app: &TestApp, c: &Client) -> Value {
    let r = c.get(app.url("/api/v1/auth/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub fn secret_from_base32(s: &str) -> TotpSecret {
    let bytes = totp_rs::Secret::Encoded(s.to_owned()).to_bytes().unwrap();
    TotpSecret::from_bytes(bytes)
}

/// The error code of a JSON error response.
pub async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// Sends a request and returns only its status.
pub trait StatusOf {
    fn status_of(self) -> impl std::future::Future<Output = StatusCode> + Send;
    /// Sends a request and returns its status and JSON error code.
    fn error_of(self) -> impl std::future::Future<Output = (StatusCode, String)> + Send;
}

impl StatusOf for reqwest::RequestBuilder {
    async fn status_of(self) -> StatusCode {
        self.send().await.unwrap().status()
    }

    async fn error_of(self) -> (StatusCode, String) {
        error_code(self.send().await.unwrap()).await
    }
}
