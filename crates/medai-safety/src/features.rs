//! Measured findings that words alone do not carry: a temperature in the fever range, a low
//! blood pressure, a fast heart or breathing rate, a low oxygen saturation, an age under three
//! months. Rules refer to them as `@name`; each is recognised from a number and the words right
//! around it, in one pass.

use crate::text::{number, Doc};

/// A finding computed from numbers in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Feature {
    /// Temperature ≥ 38.0 °C or ≥ 100.4 °F.
    FeverTemp,
    /// Systolic blood pressure < 90 mmHg, or mean arterial pressure < 65.
    HypotensionBp,
    /// Heart rate > 100 per minute.
    TachycardiaHr,
    /// Respiratory rate ≥ 22 per minute.
    TachypneaRr,
    /// Oxygen saturation < 92 %.
    HypoxiaSpo2,
    /// An age under three months ("6 wk old", "10-day-old", "2 mo", "DOL 12").
    InfantUnder3Months,
    /// A pregnancy of at most 14 weeks ("7 weeks pregnant", "GA 6 wks", "6/40").
    EarlyPregnancy,
}

impl Feature {
    /// Every feature with its name in the rule file.
    pub const ALL: [(Feature, &'static str); 7] = [
        (Feature::FeverTemp, "@fever_temp"),
        (Feature::HypotensionBp, "@hypotension_bp"),
        (Feature::TachycardiaHr, "@tachycardia_hr"),
        (Feature::TachypneaRr, "@tachypnea_rr"),
        (Feature::HypoxiaSpo2, "@hypoxia_spo2"),
        (Feature::InfantUnder3Months, "@infant_under_3_months"),
        (Feature::EarlyPregnancy, "@early_pregnancy"),
    ];

    /// The feature named `name` (with its `@`).
    pub fn parse(name: &str) -> Option<Feature> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

/// True when one of the `back` words before `i` (same sentence) is in `cues`.
fn cue_before(doc: &Doc, i: usize, back: usize, cues: &[&str]) -> bool {
    let Some(t) = doc.toks.get(i) else {
        return false;
    };
    (1..=back).any(|k| {
        i.checked_sub(k)
            .is_some_and(|j| doc.toks[j].sentence == t.sentence && cues.contains(&doc.word(j)))
    })
}

const TEMP_CUES: &[&str] = &[
    "t",
    "temp",
    "temperature",
    "tmax",
    "tm",
    "febrile",
    "fever",
    "fevers",
    "pyrexia",
    "pyrexial",
    "feverish",
];
const BP_CUES: &[&str] = &[
    "bp",
    "sbp",
    "pressure",
    "pressures",
    "nibp",
    "abp",
    "pressure's",
];
const HR_CUES: &[&str] = &[
    "hr",
    "pulse",
    "rate",
    "tachycardic",
    "tachy",
    "tachycardia",
    "p",
];
const RR_CUES: &[&str] = &[
    "rr",
    "resp",
    "respiratory",
    "respirations",
    "tachypneic",
    "tachypnoeic",
];
const SPO2_CUES: &[&str] = &[
    "spo2",
    "sat",
    "sats",
    "saturation",
    "saturating",
    "o2",
    "ox",
    "sao2",
];
const AGE_NOUNS: &[&str] = &[
    "old", "o", "infant", "baby", "boy", "girl", "son", "daughter", "neonate", "male", "female",
    "m", "f",
];

/// The unit of an age: days per unit, or None.
fn age_unit(u: &str) -> Option<f64> {
    match u {
        "d" | "day" | "days" | "dy" | "do" => Some(1.0),
        "w" | "wk" | "wks" | "week" | "weeks" | "wo" => Some(7.0),
        "m" | "mo" | "mos" | "month" | "months" | "mth" | "mths" | "mon" => Some(30.4),
        _ => None,
    }
}

/// Every feature found, as (word index, feature).
pub(crate) fn find(doc: &Doc) -> Vec<(usize, Feature)> {
    let mut out = Vec::new();
    for i in 0..doc.toks.len() {
        let word = doc.word(i);
        let Some((value, unit)) = number(word) else {
            continue;
        };
        let next = doc.word(i + 1);
        let same_sentence = |j: usize| {
            doc.toks
                .get(j)
                .is_some_and(|t| t.sentence == doc.toks[i].sentence)
        };
        // temperature
        let unit_t = if unit.is_empty() && same_sentence(i + 1) {
            next
        } else {
            unit
        };
        let celsius = matches!(unit_t, "c" | "degc" | "celsius");
        let fahrenheit = matches!(unit_t, "f" | "degf" | "fahrenheit");
        let temp_context = cue_before(doc, i, 3, TEMP_CUES);
        if (celsius || temp_context && !fahrenheit) && (38.0..=43.5).contains(&value)
            || (fahrenheit || temp_context && !celsius) && (100.4..=110.0).contains(&value)
        {
            out.push((i, Feature::FeverTemp));
        }
        // blood pressure: "BP 82/50", "SBP 85", "MAP 58", or a bare "84/52"
        let diastolic = doc
            .toks
            .get(i + 1)
            .filter(|t| t.slash_before && t.start == doc.toks[i].end + 1)
            .and_then(|_| number(next));
        let bp_context = cue_before(doc, i, 3, BP_CUES);
        if let Some((dia, _)) = diastolic {
            let plausible =
                (40.0..90.0).contains(&value) && (15.0..=60.0).contains(&dia) && dia < value;
            if plausible && (bp_context || value >= 50.0) && !doc.toks[i].slash_before {
                out.push((i, Feature::HypotensionBp));
            }
        } else if cue_before(doc, i, 2, &["sbp"]) && (40.0..90.0).contains(&value)
            || cue_before(doc, i, 2, &["map"]) && (20.0..65.0).contains(&value)
        {
            out.push((i, Feature::HypotensionBp));
        }
        // heart rate
        let hr_unit = matches!(unit, "bpm") || next == "bpm";
        if (hr_unit || cue_before(doc, i, 3, HR_CUES))
            && diastolic.is_none()
            && value > 100.0
            && value < 300.0
            && (unit.is_empty() || unit == "s" || unit == "bpm")
        {
            out.push((i, Feature::TachycardiaHr));
        }
        // respiratory rate
        if (cue_before(doc, i, 3, RR_CUES) || next == "breaths")
            && (22.0..80.0).contains(&value)
            && (unit.is_empty() || unit == "s")
            && diastolic.is_none()
        {
            out.push((i, Feature::TachypneaRr));
        }
        // oxygen saturation
        if cue_before(doc, i, 3, SPO2_CUES)
            && (50.0..92.0).contains(&value)
            && (unit.is_empty() || unit == "s" || next == "%" || unit == "%")
            && diastolic.is_none()
        {
            out.push((i, Feature::HypoxiaSpo2));
        }
        // age under three months
        let (days_per, after) = match age_unit(unit) {
            Some(d) => (Some(d), i + 1),
            None if unit.is_empty() && same_sentence(i + 1) => (age_unit(next), i + 2),
            None => (None, i + 1),
        };
        if let Some(days_per) = days_per {
            let days = value * days_per;
            let aged = (same_sentence(after) && AGE_NOUNS.contains(&doc.word(after)))
                || cue_before(doc, i, 1, &["aged", "age"])
                || (doc.word(after) == "of"
                    && matches!(doc.word(after + 1), "age" | "life")
                    && same_sentence(after + 1));
            if aged && days < 90.0 {
                out.push((i, Feature::InfantUnder3Months));
            }
        }
        if unit.is_empty() && value < 90.0 && cue_before(doc, i, 1, &["dol"]) {
            out.push((i, Feature::InfantUnder3Months));
        }
        // early pregnancy: "7 weeks pregnant", "GA 6 wks", "6/40", "pregnant at 8 weeks"
        if days_per == Some(7.0) && value <= 14.0 {
            let pregnant = |w: &str| {
                matches!(
                    w,
                    "pregnant" | "gestation" | "pregnancy" | "ga" | "gestational" | "iup"
                )
            };
            let after_ok = (after..after + 2).any(|j| same_sentence(j) && pregnant(doc.word(j)));
            let before_ok = (1..=3).any(|k| {
                i.checked_sub(k).is_some_and(|j| {
                    doc.toks[j].sentence == doc.toks[i].sentence && pregnant(doc.word(j))
                })
            });
            if after_ok || before_ok {
                out.push((i, Feature::EarlyPregnancy));
            }
        }
        if unit.is_empty()
            && next == "40"
            && doc.toks.get(i + 1).is_some_and(|t| t.slash_before)
            && (3.0..=14.0).contains(&value)
        {
            out.push((i, Feature::EarlyPregnancy));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    fn features(text: &str) -> Vec<Feature> {
        find(&tokenize(text)).into_iter().map(|(_, f)| f).collect()
    }

    #[test]
    fn temperatures() {
        for t in [
            "T 38.5",
            "temp 101.2F",
            "febrile to 39.4 C",
            "Tmax 102",
            "39.1°C",
            "38.6c",
        ] {
            assert_eq!(features(t), [Feature::FeverTemp], "{t}");
        }
        for t in [
            "T 37.2",
            "fever for 2 days",
            "temp 99.5F",
            "38.5 kg",
            "on day 38",
        ] {
            assert!(features(t).is_empty(), "{t}");
        }
    }

    #[test]
    fn vital_signs() {
        assert_eq!(features("BP 82/50"), [Feature::HypotensionBp]);
        assert_eq!(features("SBP 85"), [Feature::HypotensionBp]);
        assert_eq!(features("MAP 58"), [Feature::HypotensionBp]);
        assert!(features("BP 120/80").is_empty());
        assert!(features("seen 12/5").is_empty());
        assert_eq!(features("HR 128"), [Feature::TachycardiaHr]);
        assert_eq!(features("pulse 130s"), [Feature::TachycardiaHr]);
        assert!(features("HR 88").is_empty());
        assert_eq!(features("RR 28"), [Feature::TachypneaRr]);
        assert_eq!(features("sats 86% on RA"), [Feature::HypoxiaSpo2]);
        assert!(features("sats 97%").is_empty());
    }

    #[test]
    fn infant_ages() {
        for t in [
            "6 wk old",
            "6-week-old",
            "10 day old",
            "2 mo old",
            "2 m/o",
            "8 weeks of age",
            "aged 5 weeks",
            "DOL 12",
            "6wk old",
        ] {
            assert_eq!(features(t), [Feature::InfantUnder3Months], "{t}");
        }
        for t in [
            "4 month old",
            "3 months old",
            "fever for 2 days",
            "6 y/o",
            "14 wk old",
        ] {
            assert!(features(t).is_empty(), "{t}");
        }
    }

    #[test]
    fn early_pregnancy() {
        for t in [
            "7 weeks pregnant",
            "GA 6 wks",
            "pregnant at 8 weeks",
            "6/40",
        ] {
            assert_eq!(features(t), [Feature::EarlyPregnancy], "{t}");
        }
        for t in ["32 weeks pregnant", "cough for 6 weeks", "34/40"] {
            assert!(features(t).is_empty(), "{t}");
        }
    }
}
