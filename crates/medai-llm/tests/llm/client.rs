//! The OpenAI-compatible client against the scripted server: protocol, paths, auth, errors.

use crate::upstream::{cut_every, sse_events, End, Reply, Upstream};
use crate::{collect, config, model_toml, question, registry};
use medai_llm::{LlmError, ModelProvider, ModelRegistry, NoopObserver, OpenAiProvider};
use std::sync::Arc;

#[tokio::test]
async fn tokens_and_usage_reassemble_exactly_whatever_the_byte_cuts() {
    let up = Upstream::start().await;
    let tokens = ["Na", "ïve", " 😀", "中", "文", " ok", "\n\"quoted\""];
    let events = sse_events(&tokens, "llama-3.1-8b@sha256:ab12", Some((42, 7)));
    // pieces of 1, 2 and 3 bytes fall inside every multi-byte character and every `data:` line
    for sizes in [&[1usize][..], &[2, 3], &[5, 1, 7], &[4096]] {
        up.script([Reply::pieces(cut_every(&events, sizes))]);
    }
    let cfg = config(&[model_toml(
        "local",
        &up.url(),
        "params = { temperature = 0.2, top_p = 0.9, max_tokens = 256, stop = [\"</s>\"], seed = 7 }",
    )]);
    let (reg, recorder) = registry(&cfg);
    for _ in 0..4 {
        let stream = reg.chat_stream(None, question("hello")).await.unwrap();
        let (text, done) = collect(stream).await;
        let done = done.unwrap();
        assert_eq!(text, tokens.concat());
        assert_eq!(
            done.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((42, 7))
        );
        assert_eq!(done.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            done.upstream_model.as_deref(),
            Some("llama-3.1-8b@sha256:ab12")
        );
        assert_eq!(done.model_id, "local");
        assert_eq!(done.provider, "openai");
        assert_eq!((done.attempts, done.failover), (1, false));
        assert!(done.timing.first_token <= done.timing.total);
    }
    assert!(recorder.has("completed local 42/7"));
    let captured = up.captured();
    assert_eq!(captured.len(), 4);
    let request = &captured[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.headers.get("authorization").unwrap(),
        "Bearer sk-test-secret-123"
    );
    let body = &request.body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["messages"][1]["content"], "hello");
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!((body["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(body["stop"][0], "</s>");
    assert_eq!(body["seed"], 7);
}

#[tokio::test]
async fn request_parameters_override_the_model_defaults() {
    let up = Upstream::start().await;
    up.always(Reply::tokens(&["x"]));
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "params = { temperature = 0.2, seed = 1 }",
    )]);
    let (reg, _) = registry(&cfg);
    let mut q = question("q");
    q.params.temperature = Some(0.0);
    q.params.max_tokens = Some(5);
    let (_, done) = collect(reg.chat_stream(Some("m"), q).await.unwrap()).await;
    let done = done.unwrap();
    assert_eq!(done.params.temperature, Some(0.0));
    assert_eq!(done.params.seed, Some(1));
    let body = &up.captured()[0].body;
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["max_tokens"], 5);
    assert_eq!(body["seed"], 1);
    assert!(body.get("top_p").is_none(), "unset parameters are not sent");
    let mut bad = question("q");
    bad.params.temperature = Some(5.0);
    let err = reg.chat_stream(Some("m"), bad).await.unwrap_err();
    assert!(matches!(err, LlmError::InvalidRequest(_)), "{err}");
    assert_eq!(up.chat_requests(), 1, "an invalid request never leaves");
    let err = reg
        .chat_stream(Some("nope"), question("q"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
}

#[tokio::test]
async fn azure_uses_deployment_paths_and_the_api_key_header() {
    let up = Upstream::start().await;
    up.always(Reply::tokens(&["Hi"]));
    let text = format!(
        r#"default_model = "az"
[[models]]
id = "az"
provider = "azure"
endpoint = "{}/"
deployment = "gpt-4o-prod"
api_version = "2024-10-21"
api_key = "azure-secret-key"
context_window = 128000
"#,
        up.url()
    );
    let cfg: medai_llm::LlmConfig = toml::from_str(&text).unwrap();
    let (reg, _) = registry(&cfg);
    let (answer, done) = collect(reg.chat_stream(None, question("q")).await.unwrap()).await;
    assert_eq!(answer, "Hi");
    assert_eq!(done.unwrap().provider, "azure");
    let request = &up.captured()[0];
    assert_eq!(
        request.path,
        "/openai/deployments/gpt-4o-prod/chat/completions"
    );
    assert_eq!(request.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(request.headers.get("api-key").unwrap(), "azure-secret-key");
    assert!(request.headers.get("authorization").is_none());
    assert!(request.body.get("model").is_none());
    let listed = reg.list();
    assert_eq!(
        listed[0].description.endpoint,
        format!(
            "{}/openai/deployments/gpt-4o-prod/chat/completions",
            up.url()
        )
    );
    let health = reg.health().await;
    assert!(health[0].1.ok, "{:?}", health[0].1);
    assert_eq!(up.captured()[1].path, "/openai/models");
    assert_eq!(
        up.captured()[1].query.as_deref(),
        Some("api-version=2024-10-21")
    );
}

#[tokio::test]
async fn error_statuses_carry_status_message_and_retry_policy() {
    let up = Upstream::start().await;
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "retry = { max_retries = 1, base_delay = \"1ms\", max_delay = \"2ms\" }\nbreaker = { failure_threshold = 100 }",
    )]);
    let (reg, recorder) = registry(&cfg);
    // (status, attempts the client makes, kind label, status for our own client)
    let cases = [
        (400, 1, "status_4xx", 502),
        (401, 1, "status_4xx", 502),
        (429, 2, "status_4xx", 503),
        (500, 2, "status_5xx", 502),
        (503, 2, "status_5xx", 502),
    ];
    for (status, attempts, kind, ours) in cases {
        let before = up.chat_requests();
        let mut reply = Reply::error(status, &format!("upstream says {status}"));
        if let Reply::Error { retry_after, .. } = &mut reply {
            *retry_after = Some(7);
        }
        up.always(reply);
        let err = reg.chat_stream(None, question("q")).await.unwrap_err();
        assert_eq!(up.chat_requests() - before, attempts, "status {status}");
        assert_eq!(err.kind().as_str(), kind);
        assert_eq!(err.http_status(), ours);
        match &err {
            LlmError::Status {
                status: s,
                upstream_message,
                retry_after,
            } => {
                assert_eq!(*s, status);
                assert_eq!(
                    upstream_message.as_deref(),
                    Some(format!("upstream says {status}").as_str())
                );
                assert_eq!(retry_after.map(|d| d.as_secs()), Some(7));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !err.to_string().contains("upstream says"),
            "no upstream text in Display"
        );
    }
    assert!(recorder.has("error m status_5xx"));
    // an HTML error page (a proxy in front of the model) has no message
    up.always(Reply::Error {
        status: 502,
        body: "<html>bad gateway</html>".into(),
        retry_after: None,
    });
    let err = reg.chat_stream(None, question("q")).await.unwrap_err();
    assert!(matches!(
        err,
        LlmError::Status {
            status: 502,
            upstream_message: None,
            ..
        }
    ));
}

#[tokio::test]
async fn an_error_object_inside_the_stream_and_a_mid_stream_disconnect_end_the_answer() {
    let up = Upstream::start().await;
    let mut events = sse_events(&["one", " two"], "m", None);
    events.truncate(3);
    let mut with_error = events.clone();
    with_error
        .push(b"data: {\"error\":{\"message\":\"CUDA out of memory\",\"code\":500}}\n\n".to_vec());
    up.script([
        Reply::pieces(with_error),
        Reply::pieces(cut_every(&events, &[3])).ending(End::Disconnect),
    ]);
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "retry = { max_retries = 3, base_delay = \"1ms\", max_delay = \"1ms\" }",
    )]);
    let (reg, recorder) = registry(&cfg);
    for round in 0..2 {
        let (text, end) = collect(reg.chat_stream(None, question("q")).await.unwrap()).await;
        // the first token always arrives; what follows a disconnect may be lost with it
        assert!(text == "one two" || (round == 1 && text == "one"), "{text}");
        assert!(matches!(end, Err(LlmError::Protocol(_))), "{end:?}");
    }
    assert_eq!(up.chat_requests(), 2, "never retried after the first token");
    assert_eq!(
        recorder
            .events()
            .iter()
            .filter(|e| *e == "finished m protocol")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_non_streaming_answer_or_garbage_is_a_protocol_error() {
    let up = Upstream::start().await;
    up.script([Reply::pieces(vec![b"data: not json\n\n".to_vec()])]);
    let cfg = config(&[model_toml("m", &up.url(), "retry = { max_retries = 0 }")]);
    let (reg, _) = registry(&cfg);
    let err = reg.chat_stream(None, question("q")).await.unwrap_err();
    assert!(matches!(err, LlmError::Protocol(_)));
}

#[tokio::test]
async fn secrets_stay_out_of_debug_errors_and_descriptions() {
    let cfg = config(&[model_toml("m", "http://127.0.0.1:9", "retry = { max_retries = 0 }\ntimeouts = { connect = \"300ms\", first_token = \"1s\", total = \"2s\" }")]);
    let provider = OpenAiProvider::new(&cfg.models[0]).unwrap();
    let reg = ModelRegistry::from_config(&cfg, Arc::new(NoopObserver)).unwrap();
    let err = reg.chat_stream(None, question("q")).await.unwrap_err();
    assert_eq!(err.kind().as_str(), "connect");
    let health = provider.health().await;
    assert!(!health.ok);
    let outputs = [
        format!("{cfg:?}"),
        format!("{provider:?}"),
        format!("{reg:?}"),
        format!("{:?}", reg.list()),
        format!("{err} {err:?}"),
        format!("{health:?}"),
        serde_json::to_string(provider.describe()).unwrap(),
    ];
    for out in outputs {
        assert!(!out.contains("sk-test-secret"), "{out}");
    }
}
