//! Timeouts, retries, the breaker, the queue, cancellation and failover.

use crate::upstream::{sse_events, End, Reply, Upstream};
use crate::{collect, config, model_toml, question, Recorder};
use futures_util::StreamExt;
use medai_llm::{CircuitState, LlmError, ManualClock, ModelRegistry, StreamEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        tokio::time::sleep(MS).await;
    }
}

fn slow_tokens(n: usize, gap: Duration) -> Reply {
    let tokens: Vec<String> = (0..n).map(|i| format!(" t{i}")).collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    Reply::pieces(sse_events(&refs, "m", None)).delayed(Duration::ZERO, Duration::ZERO, gap)
}

#[tokio::test]
async fn first_token_timeout_covers_slow_headers_and_a_slow_first_chunk() {
    let up = Upstream::start().await;
    let slow = Duration::from_secs(3);
    up.script([
        Reply::tokens(&["late"]).delayed(slow, Duration::ZERO, Duration::ZERO),
        Reply::tokens(&["late"]).delayed(Duration::ZERO, slow, Duration::ZERO),
    ]);
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "retry = { max_retries = 0 }\ntimeouts = { first_token = \"200ms\", total = \"10s\" }",
    )]);
    let (reg, recorder) = crate::registry(&cfg);
    for _ in 0..2 {
        let started = Instant::now();
        let err = reg.chat_stream(None, question("q")).await.unwrap_err();
        assert!(matches!(err, LlmError::TimeoutFirstToken(_)), "{err:?}");
        assert_eq!(err.http_status(), 504);
        assert!(
            started.elapsed() < slow,
            "gave up before the upstream answered"
        );
    }
    assert!(recorder.has("error m timeout_first_token"));
}

#[tokio::test]
async fn total_timeout_ends_a_stream_that_stalls_after_tokens() {
    let up = Upstream::start().await;
    let mut events = sse_events(&["a", "b"], "m", None);
    events.truncate(3);
    up.script([Reply::pieces(events).ending(End::Hang)]);
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "timeouts = { first_token = \"300ms\", total = \"600ms\" }",
    )]);
    let (reg, recorder) = crate::registry(&cfg);
    let (text, end) = collect(reg.chat_stream(None, question("q")).await.unwrap()).await;
    assert_eq!(text, "ab");
    assert!(matches!(end, Err(LlmError::TimeoutTotal(_))), "{end:?}");
    assert!(recorder.has("finished m timeout_total"));
    assert_eq!(up.chat_requests(), 1);
    up.wait_cut_short(1).await; // the stalled upstream request was closed
}

#[tokio::test]
async fn retries_happen_before_the_first_token_only() {
    let up = Upstream::start().await;
    up.script([
        Reply::error(503, "warming up"),
        Reply::Stream {
            header_delay: Duration::ZERO,
            first_delay: Duration::ZERO,
            gap: Duration::ZERO,
            pieces: vec![b"data: {\"choices\":[]}\n\n".to_vec()],
            end: End::Disconnect,
        },
        Reply::tokens(&["fine"]),
    ]);
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "retry = { max_retries = 2, base_delay = \"5ms\", max_delay = \"10ms\" }",
    )]);
    let (reg, recorder) = crate::registry(&cfg);
    let (text, done) = collect(reg.chat_stream(None, question("q")).await.unwrap()).await;
    assert_eq!(text, "fine");
    assert_eq!(done.unwrap().attempts, 3);
    assert_eq!(up.chat_requests(), 3);
    let events = recorder.events();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("error m")).count(),
        2
    );
    assert_eq!(
        events.iter().filter(|e| e.starts_with("started m")).count(),
        1
    );
}

#[tokio::test]
async fn the_breaker_opens_after_n_failures_and_half_opens_after_the_cool_down() {
    let up = Upstream::start().await;
    up.script([
        Reply::error(500, "a"),
        Reply::error(502, "b"),
        Reply::tokens(&["back"]),
    ]);
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "retry = { max_retries = 0 }\nbreaker = { failure_threshold = 2, cool_down = \"60s\" }",
    )]);
    let clock = ManualClock::default();
    let recorder = Arc::new(Recorder::default());
    let reg =
        ModelRegistry::from_config_with_clock(&cfg, recorder.clone(), Arc::new(clock.clone()))
            .unwrap();
    for _ in 0..2 {
        assert!(reg.chat_stream(None, question("q")).await.is_err());
    }
    assert_eq!(reg.circuit_state("m"), Some(CircuitState::Open));
    let err = reg.chat_stream(None, question("q")).await.unwrap_err();
    assert!(matches!(err, LlmError::CircuitOpen { .. }), "{err:?}");
    assert_eq!(err.http_status(), 503);
    assert_eq!(err.retry_after_secs(), Some(60));
    assert_eq!(
        up.chat_requests(),
        2,
        "an open circuit sends nothing upstream"
    );
    clock.advance(Duration::from_secs(59));
    assert!(reg.chat_stream(None, question("q")).await.is_err());
    clock.advance(Duration::from_secs(1));
    assert_eq!(reg.circuit_state("m"), Some(CircuitState::HalfOpen));
    let (text, done) = collect(reg.chat_stream(None, question("q")).await.unwrap()).await;
    assert_eq!(text, "back");
    assert!(done.is_ok());
    assert_eq!(reg.circuit_state("m"), Some(CircuitState::Closed));
    let changes: Vec<String> = recorder
        .events()
        .into_iter()
        .filter(|e| e.starts_with("circuit"))
        .collect();
    assert_eq!(
        changes,
        ["circuit m open", "circuit m half_open", "circuit m closed"]
    );
    assert!(recorder.has("error m circuit_open"));
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let up = Upstream::start().await;
    up.always(slow_tokens(2000, 5 * MS));
    let cfg = config(&[model_toml(
        "m",
        &up.url(),
        "limits = { max_concurrent = 1, max_queue = 1, retry_after = \"3s\", queue_timeout = \"30s\" }",
    )]);
    let (reg, recorder) = crate::registry(&cfg);
    let reg = Arc::new(reg);
    let first = reg.chat_stream(None, question("q")).await.unwrap();
    let waiting = tokio::spawn({
        let reg = Arc::clone(&reg);
        async move {
            let stream = reg.chat_stream(None, question("q")).await.unwrap();
            stream.model_id().to_string()
        }
    });
    wait_until("a request in the queue", || reg.list()[0].queue_depth == 1).await;
    assert_eq!(reg.list()[0].in_flight, 1);
    let err = reg.chat_stream(None, question("q")).await.unwrap_err();
    assert!(matches!(err, LlmError::QueueFull { .. }), "{err:?}");
    assert_eq!(err.http_status(), 429);
    assert_eq!(err.retry_after_secs(), Some(3));
    assert!(recorder.has("queue m 1"));
    assert!(recorder.has("error m queue_full"));
    assert_eq!(up.chat_requests(), 1);
    drop(first); // frees the slot for the waiting request
    assert_eq!(waiting.await.unwrap(), "m");
    assert!(recorder.has("queue m 0"));
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_request() {
    let up = Upstream::start().await;
    up.always(slow_tokens(5000, 2 * MS));
    let cfg = config(&[model_toml("m", &up.url(), "")]);
    let (reg, recorder) = crate::registry(&cfg);
    let mut stream = reg.chat_stream(None, question("q")).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            stream.next().await,
            Some(Ok(StreamEvent::Delta(_)))
        ));
    }
    assert_eq!(reg.list()[0].in_flight, 1);
    assert_eq!(up.cut_short(), 0);
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), up.wait_cut_short(1))
        .await
        .expect("the upstream saw the connection close");
    assert_eq!(reg.list()[0].in_flight, 0);
    assert!(recorder.has("finished m cancelled"));
    assert_eq!(reg.circuit_state("m"), Some(CircuitState::Closed));

    // dropping the pending call (client gone before the first token) cancels too
    up.script([slow_tokens(10, MS).delayed(Duration::ZERO, Duration::from_secs(30), MS)]);
    let call = reg.chat_stream(None, question("q"));
    assert!(tokio::time::timeout(Duration::from_millis(300), call)
        .await
        .is_err());
    tokio::time::timeout(Duration::from_secs(10), up.wait_cut_short(2))
        .await
        .expect("the upstream saw the pending request close");
}

#[tokio::test]
async fn failover_serves_when_the_primary_fails_before_its_first_token() {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    primary.always(Reply::error(500, "down"));
    backup.always(Reply::tokens(&["from ", "backup"]));
    let cfg = config(&[
        model_toml(
            "main",
            &primary.url(),
            "failover = \"spare\"\nretry = { max_retries = 1, base_delay = \"1ms\", max_delay = \"1ms\" }\nbreaker = { failure_threshold = 4, cool_down = \"60s\" }",
        ),
        model_toml("spare", &backup.url(), ""),
    ]);
    let (reg, recorder) = crate::registry(&cfg);
    for round in 0..3 {
        let stream = reg.chat_stream(None, question("q")).await.unwrap();
        assert_eq!(stream.model_id(), "spare");
        assert!(stream.is_failover());
        let (text, done) = collect(stream).await;
        assert_eq!(text, "from backup");
        let done = done.unwrap();
        assert_eq!((done.model_id.as_str(), done.failover), ("spare", true));
        let expected_primary = if round < 2 { 2 * (round + 1) } else { 4 };
        assert_eq!(primary.chat_requests(), expected_primary, "round {round}");
    }
    // two rounds of two attempts opened the breaker: the third went straight to the spare
    assert_eq!(reg.circuit_state("main"), Some(CircuitState::Open));
    assert!(recorder.has("error main circuit_open"));
    assert_eq!(backup.chat_requests(), 3);
    // without a working failover, the primary's error is what the caller sees
    backup.always(Reply::error(500, "also down"));
    let err = reg.chat_stream(None, question("q")).await.unwrap_err();
    assert!(matches!(err, LlmError::CircuitOpen { .. }), "{err:?}");
}
