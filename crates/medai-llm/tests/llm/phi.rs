//! The PHI contract end to end: the caller de-identifies, the upstream sees only surrogates, and
//! the streamed answer (surrogates cut across chunks and inside UTF-8 characters) comes back
//! exactly re-identified.

use crate::upstream::{cut_every, sse_events, Reply, Upstream};
use crate::{config, model_toml, question, registry};
use futures_util::StreamExt;
use medai_llm::{StreamEvent, StreamingReidentifier};
use medai_phi::{Detector, Vault};

const RECORD: &str = "Patient: Margaret Okonkwo, MRN 5567123, DOB 02/11/1948, phone (617) 555-0142, lives in Springfield. Seen by Dr. Alan Whitcombe on 03/14/2024.";
const QUESTION: &str =
    "Margaret Okonkwo reports chest pain since this morning; what should I consider?";
const ORIGINALS: &[&str] = &[
    "Margaret",
    "Okonkwo",
    "5567123",
    "02/11/1948",
    "555-0142",
    "Springfield",
    "Whitcombe",
    "03/14/2024",
];

#[tokio::test]
async fn no_original_phi_reaches_upstream_and_the_answer_is_reidentified_exactly() {
    let detector = Detector::new();
    let mut vault = Vault::new();
    let context = vault.deidentify(&detector, RECORD);
    let asked = vault.deidentify(&detector, QUESTION);

    // The model answers with the surrogates it was given, in pieces that cut them (and the
    // multi-byte characters around them) anywhere.
    let answer_deid = format!(
        "Für {} — given the history at {} and chest pain, consider ACS first. 😀 Call {}.",
        first_word(&asked.text),
        surrogate_near(&context.text, "lives in "),
        surrogate_near(&context.text, "phone "),
    );
    let tokens: Vec<String> = answer_deid
        .chars()
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| c.iter().collect())
        .collect();
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let up = Upstream::start().await;
    up.always(Reply::pieces(cut_every(
        &sse_events(&token_refs, "m", None),
        &[1, 2, 5],
    )));
    let cfg = config(&[model_toml("m", &up.url(), "")]);
    let (reg, _) = registry(&cfg);

    let mut request = question(&asked.text);
    request.messages.insert(
        1,
        medai_llm::Message::new(medai_llm::Role::User, context.text.clone()),
    );
    let mut stream = reg.chat_stream(None, request).await.unwrap();
    let mut reid = StreamingReidentifier::new(&vault);
    let mut shown = String::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Delta(t) => shown.push_str(&reid.push(&t)),
            StreamEvent::Done(_) => break,
        }
    }
    shown.push_str(&reid.finish());

    let sent = &up.captured()[0].raw;
    for original in ORIGINALS {
        assert!(!sent.contains(original), "{original} reached the upstream");
    }
    assert_eq!(shown, vault.reidentify(&answer_deid));
    assert!(
        shown.starts_with("Für Margaret — given the history at Springfield"),
        "{shown}"
    );
    assert!(shown.ends_with("Call (617) 555-0142."), "{shown}");
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap()
}

/// The surrogate that follows `label` in the de-identified record, up to the next comma.
fn surrogate_near<'a>(text: &'a str, label: &str) -> &'a str {
    let start = text.find(label).unwrap() + label.len();
    let rest = &text[start..];
    let end = rest.find([',', '.']).map_or(rest.len(), |e| e);
    &rest[..end]
}
