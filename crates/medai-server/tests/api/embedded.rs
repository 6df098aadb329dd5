//! The answer path end to end with `provider = "embedded"`: the server builds the model through
//! the engine factory from its `[llm]` config, and a clinician's question is answered by the
//! in-process engine (a tiny random-weight GGUF model), streamed, stored with its provenance
//! and counted in the metrics.

use crate::common::{metric, setups, test_config, TestApp};
use medai_core::Role;
use medai_engine::{fixture, Arch};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn an_embedded_model_answers_through_the_assistant() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, tokenizer) = fixture::write_tiny_model(dir.path(), Arch::Qwen2).unwrap();
    for (kind, sessions) in setups() {
        let mut config = test_config();
        config.llm = Some(json!({
            "default_model": "local",
            "models": [{
                "id": "local", "provider": "embedded",
                "params": {"temperature": 0.7, "seed": 5, "max_tokens": 24},
                "retry": {"max_retries": 0},
                "embedded": {"gguf": gguf, "tokenizer": tokenizer, "queue_capacity": 2}
            }]
        }));
        let app = TestApp::start_with(kind, sessions, config).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "medicine").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-1", "Okafor", None).await;
        let cid = app.conversation(&doc, &pid, "Fatigue").await;
        let r = doc
            .client
            .post(app.url(&format!("/api/v1/conversations/{cid}/messages")))
            .json(&json!({ "text": "What could explain her fatigue?" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{kind:?}");
        let body = r.text().await.unwrap();
        let last = body
            .split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .last()
            .unwrap();
        assert!(last.starts_with("event: done"), "{kind:?}: {body}");
        let data: Value = serde_json::from_str(last.split_once("data:").unwrap().1.trim()).unwrap();
        let prov = &data["provenance"];
        assert_eq!(prov["provider"], "embedded", "{prov}");
        assert_eq!(prov["model"]["id"], "local");
        assert_eq!(prov["model"]["version"], "medai-tiny-qwen2");
        let completion = prov["tokens"]["completion"].as_u64().unwrap();
        assert!((1..=24).contains(&completion), "{prov}");
        assert!(prov["tokens"]["prompt"].as_u64().unwrap() > 100, "{prov}");
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "medai_llm_requests_total{model=\"local\",kind=\"ok\"}"),
            Some(1.0),
            "{kind:?}"
        );
    }
}
