//! Triage behaviour on the built-in rule set (context cues, windows, evidence), rule-file
//! validation, and totality on arbitrary input.

#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use medai_safety::{RuleError, RuleSet, BUILTIN_RULES};
use proptest::prelude::*;

static RULES: std::sync::LazyLock<RuleSet> =
    std::sync::LazyLock::new(|| RuleSet::builtin().unwrap());

fn fired(text: &str) -> Vec<String> {
    RULES.triage(text).rule_ids().map(str::to_string).collect()
}

#[test]
fn builtin_rule_set_loads_with_the_required_rules() {
    let rules = RuleSet::builtin().unwrap();
    assert_eq!(rules.version(), "1.8.0");
    let ids: Vec<&str> = rules.rules().iter().map(|r| r.id()).collect();
    for id in [
        "acs",
        "stroke",
        "anaphylaxis",
        "suicide_risk",
        "sepsis",
        "severe_bleeding",
        "infant_fever",
        "meningitis",
        "ectopic_pregnancy",
    ] {
        assert!(ids.contains(&id), "{id} missing");
    }
    for r in rules.rules() {
        assert!(r.version() >= 1);
        assert!(r.notice().contains("decision support"), "{}", r.id());
        assert!(!r.title().is_empty());
    }
    assert!(RuleSet::from_path(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/rules/triage-v1.toml"
    )))
    .is_ok());
}

#[test]
fn context_cues_decide_whether_a_finding_is_present() {
    let table: &[(&str, &[&str])] = &[
        // affirmed
        ("c/o chest pain with diaphoresis", &["acs"]),
        ("CP and SOB since 1 h", &["acs"]),
        // negation before, near, after, and its end at "but"
        ("denies chest pain, diaphoresis or SOB", &[]),
        (
            "chest pain; he is not diaphoretic and not short of breath",
            &[],
        ),
        ("chest pain and SOB: denied", &[]),
        ("denies fever but c/o chest pain and diaphoresis", &["acs"]),
        ("denies chest pain but reports diaphoresis", &[]),
        // pseudo-negation does not negate
        ("chest pain not relieved by rest, diaphoretic", &["acs"]),
        ("cannot rule out anaphylaxis", &["anaphylaxis"]),
        // history
        ("MI in 2015, stable", &[]),
        (
            "history of stroke with residual arm weakness and slurred speech",
            &[],
        ),
        ("prior anaphylaxis to penicillin, now well", &[]),
        // a clause-bound history cue covers its own clause only
        ("known fibroids, massive PV bleeding", &["severe_bleeding"]),
        ("known fibroids with massive PV bleeding", &[]),
        // a backward cue covers the terminator word that begins its phrase
        ("Brother took his own life last year.", &[]),
        ("took his own life", &["suicide_risk"]),
        ("h/o stroke, now new facial droop since 30 min", &["stroke"]),
        // hypothetical and teaching
        ("return precautions for chest pain or diaphoresis", &[]),
        (
            "what are the warning signs of stroke such as facial droop and slurred speech?",
            &[],
        ),
        ("how to counsel on anaphylaxis", &[]),
        (
            "Pt now has facial droop and slurred speech; what are the warning signs of stroke?",
            &["stroke"],
        ),
        ("not sure if this is anaphylaxis", &["anaphylaxis"]),
        // look-alikes
        ("SI joint pain", &[]),
        ("septic arthritis, afebrile", &[]),
        ("4 month old with fever", &[]),
        ("6 wk old with fever", &["infant_fever"]),
        ("T 38.9, HR 124, RR 28", &["sepsis"]),
        ("T 38.9, HR 124", &[]),
    ];
    for (text, expected) in table {
        assert_eq!(fired(text), *expected, "{text}");
    }
}

#[test]
fn terms_must_be_close_together() {
    let filler = " and the plan was discussed at length with the family".repeat(6);
    assert_eq!(
        fired(&format!("chest pain{filler}. Diaphoretic.")),
        Vec::<String>::new()
    );
    assert_eq!(fired("chest pain. Diaphoretic on arrival."), ["acs"]);
}

#[test]
fn a_hit_carries_the_rule_and_offsets_of_its_evidence() {
    let rules = RuleSet::builtin().unwrap();
    let text = "Now c/o chest pain with diaphoresis.";
    let t = rules.triage(text);
    assert!(t.flagged);
    assert_eq!(t.rule_set_version, "1.8.0");
    let hit = &t.hits[0];
    assert_eq!(hit.rule_id, "acs");
    assert_eq!(hit.rule_version, 8);
    assert!(hit.notice.contains("decision support"));
    let words: Vec<&str> = hit.evidence.iter().map(|e| &text[e.start..e.end]).collect();
    assert_eq!(words, ["chest pain", "diaphoresis"]);
    assert!(!rules.triage("").flagged);
}

fn broken(from: &str, to: &str) -> RuleError {
    assert!(BUILTIN_RULES.contains(from), "{from}");
    RuleSet::from_toml(&BUILTIN_RULES.replacen(from, to, 1)).unwrap_err()
}

#[test]
fn invalid_rule_files_are_refused_naming_rule_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("id = \"stroke\"", "id = \"acs\"", "rule \"acs\", field `id`: another rule"),
        ("id = \"stroke\"", "id = \"Stroke!\"", "field `id`"),
        ("version = 7\ntitle = \"Possible acute stroke\"", "version = 0\ntitle = \"Possible acute stroke\"", "rule \"stroke\", field `version`"),
        ("This is decision support, not a diagnosis; it does not replace clinical judgement.\"\n\n[rule.terms]\nface", "Act now.\"\n\n[rule.terms]\nface", "rule \"stroke\", field `notice`"),
        ("groups = [\"face\", \"arm\", \"speech\", \"vision\"]", "groups = [\"face\", \"arms\", \"speech\", \"vision\"]", "rule \"stroke\", field `pattern[0].groups`: \"arms\" is not a term group"),
        ("min = 2\nwithin = 30", "min = 5\nwithin = 30", "field `pattern[0].min`"),
        ("min = 2\nwithin = 30", "min = 2", "field `pattern[0].within`"),
        ("within = 25\n\n[[rule.pattern]]", "within = 0\n\n[[rule.pattern]]", "field `pattern[0].within`"),
        ("\"@infant_under_3_months\",", "\"@infant_age\",", "rule \"infant_fever\", field `terms.infant`: unknown measured feature"),
        ("\"crooked smile\",", "\"crooked+smile\",", "rule \"stroke\", field `terms.face`"),
        ("\"crooked smile\",", "\"crooked smile\", \"crooked smile\",", "rule \"stroke\", field `terms.face`: \"crooked smile\" is listed twice"),
        ("\"diaphore*\",", "\"di*\",", "rule \"acs\", field `terms.associated`"),
        ("[[rule.pattern]]\ngroups = [\"infant\", \"fever\"]\nwithin = 80", "[[rule.pattern]]\ngroups = [\"infant\"]", "field `terms.fever`: this term group is used by no pattern"),
        ("negation_window = 7", "negation_window = 0", "rule \"(cues)\", field `negation_window`"),
        ("version = \"1.8.0\"", "version = \"\"", "rule \"(ruleset)\", field `version`"),
        ("id = \"stroke\"", "id = \"stroke\"\ncolour = \"red\"", "unknown field `colour`"),
        ("[cues]", "[cues", "not a valid rule set"),
    ];
    for (from, to, expected) in cases {
        let msg = broken(from, to).to_string();
        assert!(msg.contains(expected), "{to:?}: {msg:?} lacks {expected:?}");
    }
    let err = RuleSet::from_path(std::path::Path::new("/nonexistent/rules.toml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/rules.toml"));
}

proptest! {
    #[test]
    fn never_panics_and_evidence_is_in_bounds(text in "\\PC{0,400}") {
        let t = RULES.triage(&text);
        prop_assert_eq!(t.flagged, !t.hits.is_empty());
        for h in &t.hits {
            for e in &h.evidence {
                prop_assert!(e.start < e.end && e.end <= text.len());
                prop_assert!(text.is_char_boundary(e.start) && text.is_char_boundary(e.end));
            }
        }
    }

    #[test]
    fn clinical_fragments_in_any_order_never_panic(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("chest pain"), Just("denies"), Just("no"), Just("h/o"), Just("if"),
                Just("BP 80/"), Just("/50"), Just("T 38."), Just("6 wk"), Just("old"),
                Just("SI"), Just(","), Just("."), Just("?"), Just("ß"), Just("\n"),
                Just("facial droop"), Just("warning signs"), Just("but"), Just("2015"),
                Just("diaphoretic"), Just("ü"), Just("'"), Just("/"), Just("-"),
            ],
            0..60,
        ),
        sep in prop_oneof![Just(""), Just(" ")],
    ) {
        let text = parts.join(sep);
        let t = RULES.triage(&text);
        prop_assert_eq!(t.flagged, !t.hits.is_empty());
    }
}

#[test]
fn an_if_that_introduces_the_clinicians_own_patient_now_is_not_hypothetical() {
    let rules = RuleSet::builtin().unwrap();
    let fired = |t: &str| -> Vec<String> {
        rules
            .triage(t)
            .hits
            .into_iter()
            .map(|h| h.rule_id)
            .collect()
    };
    for t in [
        "What should I do if my pt has chest pain and diaphoresis right now?",
        "How do I manage this if my patient is having crushing chest pain with diaphoresis?",
    ] {
        assert_eq!(fired(t), ["acs"], "{t}");
    }
    for t in [
        "What should I do if my pt develops chest pain and diaphoresis after discharge?",
        "Return if chest pain with diaphoresis.",
        "What if my patient has chest pain with diaphoresis one day?",
    ] {
        assert!(fired(t).is_empty(), "{t}");
    }
}

#[test]
fn phrases_added_in_1_4_0_fire_only_in_their_narrow_sense() {
    let none: Vec<String> = Vec::new();
    // the narrow senses fire
    assert_eq!(
        fired("Per nursing, pt said 'I've had enough, I've got the tablets saved up'."),
        ["suicide_risk"]
    );
    assert_eq!(
        fired("72F c/o epigastric discomfort since 04:00, clammy. ECG: ST depression V4-V6."),
        ["acs"]
    );
    assert_eq!(
        fired("82F, T 37.9, headache for 2 days, o/e neck stiff, dislikes the light."),
        ["meningitis"]
    );
    // the ordinary senses do not
    for text in [
        "Had enough to eat today and slept well; mood bright.",
        "High symptom burden from her arthritis; she says she is a burden on nobody.",
        "He keeps jumping from topic to topic in clinic.",
        "Peptic ulcer on omeprazole. BP 84/50 after the new antihypertensive.",
        "Hb 132 129 on repeat, stable; minor bleeding from the gums when brushing.",
    ] {
        assert_eq!(fired(text), none, "{text}");
    }
    // a present-tense family word does not turn the patient's own findings into history
    assert_eq!(
        fired("Her brother has brought her in, she has chest pain and diaphoresis."),
        ["acs"]
    );
    // billing and teaching requests are set aside, a clinical note mentioning teaching is not
    assert_eq!(
        fired("Billing q: can I bill critical care time for the anaphylaxis pt yesterday?"),
        none
    );
    assert_eq!(
        fired("Teaching for FY1s tomorrow: adrenaline dose in anaphylaxis for a 6-year-old?"),
        none
    );
}

#[test]
fn engine_cues_added_in_1_5_0() {
    let none: Vec<String> = Vec::new();
    // a question answered "no" is negated as a whole, with or without a speaker label
    assert_eq!(
        fired("They asked chest pain? no. Face droop? no. Arm weakness? no. Just a cold."),
        none
    );
    assert_eq!(
        fired("Nurse: slurred speech or face drooping?\nPt: no, just the usual headache"),
        none
    );
    assert_eq!(
        fired("Nurse: slurred speech or face drooping?\nDaughter: yes, since 10 minutes ago"),
        ["stroke"]
    );
    // an episode that is over: the findings before it in the sentence are history
    assert_eq!(
        fired("Anaphylaxis to penicillin treated in ED last night, observed 12h, discharged well."),
        none
    );
    assert_eq!(
        fired("Hives and wheeze after peanuts this morning, adrenaline given, fully settled."),
        none
    );
    // ... back to a contrast only
    assert_eq!(
        fired("Discharged well last week but now hives and wheeze after peanuts, lips swelling."),
        ["anaphylaxis"]
    );
    // an answer that denies everything asked in its sentence
    assert_eq!(
        fired("Asked directly about self-harm and thoughts of ending her life - says never."),
        none
    );
    // suppressors: a confirmed IUP locates the pregnancy; a forehead-involving facial weakness
    // is a Bell's palsy, but an arm or speech finding still counts
    assert_eq!(
        fired("8/40, confirmed IUP with heartbeat on scan last week, light spotting today."),
        none
    );
    assert_eq!(
        fired("8/40, no IUP confirmed yet, light spotting today and L sided pain."),
        ["ectopic_pregnancy"]
    );
    assert_eq!(
        fired("Woke with R facial weakness including the forehead, can't close the eye."),
        none
    );
    assert_eq!(
        fired("Woke with R facial weakness including the forehead and slurred speech."),
        ["stroke"]
    );
    // bare temperatures, spelled ages and the mother's postnatal check in the infant rule
    assert_eq!(
        fired("Phone triage: 10-week-old, parents measured 38.5 under the arm twice."),
        ["infant_fever"]
    );
    assert_eq!(fired("Ten-week-old twin with temp 38.4."), ["infant_fever"]);
    assert_eq!(
        fired(
            "Postnatal check for mum (6wk): mood good. Baby's had a temp of 38.4 since last night."
        ),
        ["infant_fever"]
    );
    assert_eq!(
        fired("Postnatal check for mum (6wk): baby's temp 37.1, feeding well."),
        none
    );
    assert_eq!(fired("6wk old, Hct 38.5, feeding well."), none);
}

#[test]
fn false_alarms_known_in_1_5_0_are_fixed_in_1_6_0() {
    let none: Vec<String> = Vec::new();
    // the mother's fever at a postnatal check, next to the baby's normal temperature
    assert_eq!(
        fired(
            "Postnatal check day 6: mum febrile 38.4, lochia offensive, ?endometritis; baby's \
             temperature 36.9, feeding well."
        ),
        none
    );
    assert_eq!(
        fired("Postnatal check at 10 days: mother's temperature 38.3, wound red; baby temp 36.8."),
        none
    );
    // ... while the baby's own fever at the same check still fires
    assert_eq!(
        fired("Postnatal check day 8: mum well; baby's temp 38.3 axillary, sleepy."),
        ["infant_fever"]
    );
    // night sweats are not a cold sweat
    assert_eq!(
        fired("58M with indigestion and sweating at night for 3 weeks, weight loss. ?lymphoma"),
        none
    );
    assert_eq!(
        fired("70M indigestion since lunch, cold sweat, pain going down his left arm."),
        ["acs"]
    );
    // hypotension after an anaesthetic induction is not on its own anaphylaxis
    assert_eq!(
        fired("Intraoperative hypotension after induction, responded to metaraminol."),
        none
    );
    assert_eq!(
        fired("Bronchospasm and widespread flushing 3 min after induction, BP 60/35."),
        ["anaphylaxis"]
    );
}

#[test]
fn engine_cues_added_in_1_6_0() {
    let none: Vec<String> = Vec::new();
    // an unticked box negates its line; a ticked one does not
    assert_eq!(
        fired("Allergy checklist:\n[ ] wheeze\n[ ] hypotension\n[x] sneezing\nHay fever."),
        none
    );
    assert_eq!(
        fired("Early pregnancy triage:\n[x] positive hCG\n[x] one-sided pain\n[ ] IUP confirmed on scan"),
        ["ectopic_pregnancy"]
    );
    // "known"/"chronic" covers the condition it names, not a new finding after it ...
    assert_eq!(
        fired("Cirrhotic with known varices vomiting bright red blood by the bowlful, BP 84/50."),
        ["severe_bleeding"]
    );
    // ... but reaches over a list joined by "and"
    assert_eq!(
        fired("Chronic left sided weakness and slurred speech since her stroke in 2019."),
        none
    );
    // "not" negates within its own clause only
    assert_eq!(
        fired("AF not anticoagulated, sudden loss of vision in the L eye 1hr ago."),
        ["stroke"]
    );
    assert_eq!(
        fired("Not diaphoretic, no chest pain, SOB on stairs."),
        none
    );
    // measured findings: a haemoglobin fall, a decimal comma, a day of life, weeks+days
    assert_eq!(
        fired("Fresh PR bleeding with clots since 0400, Hb 128 -> 79, on apixaban."),
        ["severe_bleeding"]
    );
    assert_eq!(fired("Fresh PR bleeding, Hb 128 -> 121, obs normal."), none);
    assert_eq!(
        fired("Baby boy 2 months old, temperature 38,7 since last night."),
        ["infant_fever"]
    );
    assert_eq!(
        fired("Day 12 of life, pyrexial at 38.7, sleepier."),
        ["infant_fever"]
    );
    assert_eq!(
        fired("Now 5+3 by LMP, positive test, new sharp R pelvic pain."),
        ["ectopic_pregnancy"]
    );
}

#[test]
fn suppress_tables_are_validated() {
    let text = BUILTIN_RULES.replacen(
        "[[rule.suppress]]\ngroups = [\"face\"]",
        "[[rule.suppress]]\ngroups = [\"faces\"]",
        1,
    );
    assert_ne!(text, BUILTIN_RULES);
    let err = RuleSet::from_toml(&text).unwrap_err().to_string();
    assert!(
        err.contains("rule \"stroke\", field `suppress[0].groups`"),
        "{err}"
    );
}

#[test]
fn rule_set_1_7_0_look_alikes_stay_quiet_beside_their_positives() {
    // a febrile child's heart rate is judged for the age
    assert!(fired("4yo ear pain, T 38.5, HR 120, RR 24, running around.").is_empty());
    assert_eq!(
        fired("4yo, T 39.6, HR 170, RR 44, floppy and mottled."),
        ["sepsis"]
    );
    // a PPH that is over (Hb stable, going home) is history; one happening now fires
    assert!(fired("PPH 1.2L at delivery 3 days ago; Hb stable at 98, going home.").is_empty());
    assert_eq!(
        fired("PPH 1.5L in the last 20 minutes, uterus boggy."),
        ["severe_bleeding"]
    );
    // money saved for medicines is not hoarding them
    assert!(fired("She saved up to pay for her tablets this month.").is_empty());
    assert_eq!(
        fired("He has been saving up his oxycodone tablets."),
        ["suicide_risk"]
    );
    // a band-like headache is not chest pain
    assert!(fired("Band-like headache with nausea for 2 days.").is_empty());
    assert_eq!(
        fired("Band-like tightness round the chest, sweating and nauseous."),
        ["acs"]
    );
    // a facial droop since birth is not a stroke
    assert!(fired("R sided facial droop since birth, unchanged all his life.").is_empty());
    assert_eq!(
        fired("A grey curtain came down over her R eye an hour ago."),
        ["stroke"]
    );
}
