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
    /// Lactate ≥ 2 mmol/L ("lactate 4.1", "lac 3.2", "lactate of 18 mg/dL").
    HighLactate,
    /// A troponin that rises by half or more between two values ("trop 0.04 -> 0.31").
    TroponinRise,
    /// Neutrophils < 1.0 × 10⁹/L (or < 1000 per µL): "neutrophils 0.3", "ANC 400".
    Neutropenia,
    /// A bare decimal from 38.0 to 41.9 with no unit and no other measurement's name before it
    /// ("parents measured 38.5 under the arm", "twin B 38.4 on two readings"): in an infant
    /// note this is a temperature. Only the infant rule uses it.
    BareTemp,
    /// A haemoglobin that falls by 20 g/L (2 g/dL) or more between two values ("Hb 128 -> 79",
    /// "Hb 11.2 to 8.9", "Hb dropped from 120 to 85").
    HbDrop,
}

impl Feature {
    /// Every feature with its name in the rule file.
    pub const ALL: [(Feature, &'static str); 12] = [
        (Feature::FeverTemp, "@fever_temp"),
        (Feature::HypotensionBp, "@hypotension_bp"),
        (Feature::TachycardiaHr, "@tachycardia_hr"),
        (Feature::TachypneaRr, "@tachypnea_rr"),
        (Feature::HypoxiaSpo2, "@hypoxia_spo2"),
        (Feature::InfantUnder3Months, "@infant_under_3_months"),
        (Feature::EarlyPregnancy, "@early_pregnancy"),
        (Feature::HighLactate, "@high_lactate"),
        (Feature::TroponinRise, "@troponin_rise"),
        (Feature::Neutropenia, "@neutropenia"),
        (Feature::BareTemp, "@bare_temp"),
        (Feature::HbDrop, "@hb_drop"),
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
    "thermometer",
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
    "spiked",
    "spiking",
    "spike",
    "temp's",
    "temps",
    "axillary",
    "axilla",
    "tympanic",
    "rectal",
    "measured",
    "hot",
];
/// Words before a bare decimal that name some other measurement ("Hct 38.5", "born at 38.5").
const NOT_TEMP_BEFORE: &[&str] = &[
    "hb",
    "hgb",
    "hct",
    "haematocrit",
    "hematocrit",
    "pcv",
    "glucose",
    "bg",
    "bm",
    "cbg",
    "ga",
    "gestation",
    "at",
    "weight",
    "wt",
    "weighs",
    "weighing",
    "hc",
    "head",
    "length",
    "crp",
    "wcc",
    "wbc",
    "bilirubin",
    "sbr",
    "centile",
    "bmi",
    "albumin",
    "alb",
    "k",
    "na",
    "cr",
    "urea",
    "ph",
    "pco2",
    "po2",
    "lactate",
    "sats",
    "spo2",
    "hr",
    "rr",
    "bp",
    "inr",
    "aptt",
    "pt",
    "ptt",
    "fib",
    "plt",
    "plts",
    "mcv",
    "tsh",
    "ft4",
    "ck",
    "age",
    "aged",
    "week",
    "weeks",
    "wk",
    "day",
    "days",
    "dose",
    "ml",
    "mg",
    "kg",
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
const LACTATE_CUES: &[&str] = &["lactate", "lac", "lactic", "lact"];
const TROPONIN_CUES: &[&str] = &[
    "troponin",
    "trop",
    "trops",
    "tni",
    "tnt",
    "hstni",
    "hstnt",
    "hstrop",
    "troponins",
];
const HB_CUES: &[&str] = &["hb", "hgb", "haemoglobin", "hemoglobin"];
/// Words that may stand between two haemoglobin values of a fall ("Hb 128 -> 79",
/// "Hb from 120 down to 85"); any other word ("Hb 128 MCV 79") breaks the pair.
const HB_LINKS: &[&str] = &[
    "to", "then", "now", "down", "dropped", "dropping", "fell", "falling", "fallen", "from", "and",
];
const NEUTROPHIL_CUES: &[&str] = &["neutrophils", "neuts", "anc", "neutrophil", "neut"];
/// Words after a number that make it something other than a temperature.
const NOT_TEMP_UNITS: &[&str] = &[
    "kg", "g", "mg", "mcg", "ml", "l", "mmol", "cm", "mm", "lb", "lbs", "hrs", "hours", "years",
    "yrs", "weeks", "wks", "days", "bpm", "kgs", "units", "iu",
];
/// Words before an age that say it is the patient's age ("infant 7 weeks", "baby girl, 5 wks").
const AGE_CUES_BEFORE: &[&str] = &[
    "infant", "baby", "neonate", "newborn", "boy", "girl", "son", "daughter", "aged", "age",
];

/// Animals: "10 week old kitten" is not an infant.
const ANIMALS: &[&str] = &[
    "kitten", "kittens", "puppy", "puppies", "pup", "cat", "dog", "foal", "calf", "lamb", "piglet",
    "rabbit", "bunny", "hamster", "kitty", "guinea",
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

/// "ten" → 10: number words, for ages written out ("ten-week-old twin").
fn word_number(w: &str) -> Option<f64> {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    WORDS
        .iter()
        .position(|x| *x == w)
        .and_then(|n| u32::try_from(n).ok())
        .map(f64::from)
}

/// True when one of the `back` words before `i` (same sentence) is in `cues` and no number
/// stands between it and `i` ("lactate 5.1 drawn 10 min after": 10 is not a lactate).
fn cue_right_before(doc: &Doc, i: usize, back: usize, cues: &[&str]) -> bool {
    let Some(t) = doc.toks.get(i) else {
        return false;
    };
    for k in 1..=back {
        let Some(j) = i.checked_sub(k) else {
            return false;
        };
        if doc.toks[j].sentence != t.sentence {
            return false;
        }
        if cues.contains(&doc.word(j)) {
            return true;
        }
        if number(doc.word(j)).is_some() {
            return false;
        }
    }
    false
}

/// Words after an age in years ("9 yo", "4 year old", "6 y/o").
const YEAR_UNITS: &[&str] = &["yo", "y", "yr", "yrs", "year", "years"];

/// The age in years of the oldest person the text gives an age for, when every age given is a
/// child's (under 13): "9yo viral URTI", "my 4 year old", "18 month old". None when no age is
/// given or any age is 13 or more (an adult is in the note: the adult limits stay).
fn child_age_years(doc: &Doc) -> Option<f64> {
    let mut oldest: Option<f64> = None;
    for i in 0..doc.toks.len() {
        let Some((value, unit)) = number(doc.word(i)) else {
            continue;
        };
        if doc.toks[i].slash_before
            || doc.toks.get(i + 1).is_some_and(|t| {
                t.slash_before && unit.is_empty() && number(doc.word(i + 1)).is_some()
            })
        {
            continue;
        }
        let same = |j: usize| {
            doc.toks
                .get(j)
                .is_some_and(|t| t.sentence == doc.toks[i].sentence)
        };
        let (u, after) = if unit.is_empty() && same(i + 1) {
            (doc.word(i + 1), i + 2)
        } else {
            (unit, i + 1)
        };
        let old_after = same(after) && matches!(doc.word(after), "old" | "o");
        let aged = cue_before(doc, i, 1, &["aged", "age"]);
        let years = if u == "yo" || YEAR_UNITS.contains(&u) && (old_after || aged) {
            Some(value)
        } else if age_unit(u).is_some_and(|d| d > 20.0) && old_after {
            Some(value / 12.0)
        } else {
            None
        };
        if let Some(y) = years {
            if y >= 13.0 {
                return None;
            }
            oldest = Some(oldest.map_or(y, |o: f64| o.max(y)));
        }
    }
    oldest
}

/// The heart rate above which a child is tachycardic (the upper end of the APLS normal range
/// for the age): a heart rate of 120 in a febrile 4-year-old is normal. Adults and unknown
/// ages: 100.
fn tachycardia_limit(child_years: Option<f64>) -> f64 {
    match child_years {
        Some(y) if y < 1.0 => 160.0,
        Some(y) if y < 2.0 => 150.0,
        Some(y) if y < 5.0 => 140.0,
        Some(_) => 120.0,
        None => 100.0,
    }
}

/// Every feature found, as (word index, feature).
pub(crate) fn find(doc: &Doc) -> Vec<(usize, Feature)> {
    let mut out = Vec::new();
    let hr_limit = tachycardia_limit(child_age_years(doc));
    for i in 0..doc.toks.len() {
        let word = doc.word(i);
        let spelled = word_number(word);
        let Some((value, unit)) = number(word).or(spelled.map(|v| (v, ""))) else {
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
        if spelled.is_some() {
            // a number word only ever gives an age ("ten-week-old")
            let days_per = age_unit(doc.word(i + 1));
            if let Some(d) = days_per {
                if same_sentence(i + 2) && doc.word(i + 2) == "old" && value * d < 90.0 {
                    let animal = (i + 3..i + 5).any(|j| ANIMALS.contains(&doc.word(j)));
                    if !animal {
                        out.push((i, Feature::InfantUnder3Months));
                    }
                }
            }
            continue;
        }
        let celsius = matches!(unit_t, "c" | "degc" | "celsius");
        let fahrenheit = matches!(unit_t, "f" | "degf" | "fahrenheit");
        // "104/60" is a blood pressure, "38/40" a gestation: not a temperature
        let fraction =
            doc.toks[i].slash_before || doc.toks.get(i + 1).is_some_and(|t| t.slash_before);
        let temp_context = cue_before(doc, i, 5, TEMP_CUES)
            && !NOT_TEMP_UNITS.contains(&unit_t)
            && !NOT_TEMP_UNITS.contains(&unit)
            && !fraction;
        if (celsius || temp_context && !fahrenheit) && (38.0..=43.5).contains(&value)
            || (fahrenheit || temp_context && !celsius) && (100.4..=110.0).contains(&value)
        {
            out.push((i, Feature::FeverTemp));
        }
        if word.contains('.')
            && (unit.is_empty() || celsius)
            && (38.0..42.0).contains(&value)
            && !fraction
            && !NOT_TEMP_UNITS.contains(&unit_t)
            && !cue_before(doc, i, 3, NOT_TEMP_BEFORE)
        {
            out.push((i, Feature::BareTemp));
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
        } else if (cue_before(doc, i, 2, &["sbp", "systolic"]) || next == "systolic" && bp_context)
            && (40.0..90.0).contains(&value)
            || cue_before(doc, i, 2, &["map"]) && (20.0..65.0).contains(&value)
        {
            out.push((i, Feature::HypotensionBp));
        }
        // heart rate
        let hr_unit = matches!(unit, "bpm") || next == "bpm";
        if (hr_unit || cue_before(doc, i, 3, HR_CUES))
            && diastolic.is_none()
            && value > hr_limit
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
                || cue_before(
                    doc,
                    i,
                    1,
                    &["aged", "age", "she's", "he's", "shes", "hes", "turned"],
                )
                || cue_before(doc, i, 2, AGE_CUES_BEFORE)
                || (doc.word(after) == "of"
                    && matches!(doc.word(after + 1), "age" | "life")
                    && same_sentence(after + 1));
            let animal = (after..after + 2).any(|j| ANIMALS.contains(&doc.word(j)));
            let born_ago = cue_before(doc, i, 2, &["born"]) && doc.word(after) == "ago";
            if (aged || born_ago) && days < 90.0 && !animal {
                out.push((i, Feature::InfantUnder3Months));
            }
        }
        // "6/52 old", "2/12 infant": weeks or months written as a fraction, next to an age word
        if unit.is_empty() && doc.toks.get(i + 1).is_some_and(|t| t.slash_before) {
            let days_per = match next {
                "52" => Some(7.0),
                "12" => Some(30.4),
                _ => None,
            };
            if let Some(days_per) = days_per {
                // "pt 11/52 / old" hard-wrapped: "old" after a fraction is always an age
                let aged = (same_sentence(i + 2) && AGE_NOUNS.contains(&doc.word(i + 2)))
                    || doc.word(i + 2) == "old"
                    || cue_before(doc, i, 2, AGE_CUES_BEFORE);
                let animal = (i + 2..i + 4).any(|j| ANIMALS.contains(&doc.word(j)));
                if aged && !animal && value >= 0.0 && value * days_per < 90.0 {
                    out.push((i, Feature::InfantUnder3Months));
                }
            }
        }
        if unit.is_empty() && value < 90.0 && cue_before(doc, i, 1, &["dol"]) {
            out.push((i, Feature::InfantUnder3Months));
        }
        // "day 12 of life", "day 5 baby", "postnatal day 4 neonate": a day of life
        if unit.is_empty()
            && value < 90.0
            && value.fract() == 0.0
            && cue_before(doc, i, 1, &["day"])
            && same_sentence(i + 1)
            && (next == "of" && doc.word(i + 2) == "life" && same_sentence(i + 2)
                || matches!(next, "baby" | "infant" | "neonate" | "newborn"))
        {
            out.push((i, Feature::InfantUnder3Months));
        }
        // early pregnancy: "7 weeks pregnant", "GA 6 wks", "6/40", "pregnant at 8 weeks"
        if days_per == Some(7.0) && value <= 14.0 {
            let pregnant = |w: &str| {
                matches!(
                    w,
                    "pregnant" | "gestation" | "pregnancy" | "ga" | "gestational" | "iup" | "along"
                )
            };
            let after_ok = (after..after + 2).any(|j| same_sentence(j) && pregnant(doc.word(j)))
                // "6 weeks by dates", "7 wks by LMP"
                || doc.word(after) == "by"
                    && same_sentence(after + 1)
                    && matches!(doc.word(after + 1), "dates" | "lmp");
            let before_ok = (1..=3).any(|k| {
                i.checked_sub(k).is_some_and(|j| {
                    doc.toks[j].sentence == doc.toks[i].sentence && pregnant(doc.word(j))
                })
            });
            // "I'm 6 weeks": only a pregnant woman gives her own age in weeks
            let first_person = cue_before(doc, i, 1, &["i'm", "im"])
                || doc.word(i.wrapping_sub(1)) == "am" && doc.word(i.wrapping_sub(2)) == "i";
            if after_ok || before_ok || first_person {
                out.push((i, Feature::EarlyPregnancy));
            }
        }
        // lactate ≥ 2 mmol/L, or ≥ 18 mg/dL when the unit says so
        if cue_right_before(doc, i, 3, LACTATE_CUES) && diastolic.is_none() {
            let mg_dl = unit == "mg" || next == "mg";
            let high = if mg_dl {
                (18.0..300.0).contains(&value)
            } else {
                (2.0..30.0).contains(&value) && (unit.is_empty() || unit == "mmol")
            };
            if high {
                out.push((i, Feature::HighLactate));
            }
        }
        // a troponin that rises: "trop 0.04 -> 0.31", "troponin 45 then 310"
        if cue_before(doc, i, 3, TROPONIN_CUES) && unit.is_empty() {
            let later = (i + 1..(i + 4).min(doc.toks.len()))
                .filter(|&j| same_sentence(j))
                .find_map(|j| number(doc.word(j)).filter(|(_, u)| u.is_empty()));
            if let Some((second, _)) = later {
                if value > 0.0 && second >= value * 1.5 {
                    out.push((i, Feature::TroponinRise));
                }
            }
        }
        // a haemoglobin that falls: "Hb 128 -> 79", "Hb dropped from 120 to 85"
        if cue_before(doc, i, 3, HB_CUES) && unit.is_empty() && !doc.toks[i].slash_before {
            let mut j = i + 1;
            while j < doc.toks.len() && j <= i + 4 && HB_LINKS.contains(&doc.word(j)) {
                j += 1;
            }
            let later = (j <= i + 4 && same_sentence(j))
                .then(|| number(doc.word(j)))
                .flatten()
                .filter(|(_, u)| u.is_empty() || matches!(*u, "g"));
            if let Some((second, _)) = later {
                let grams_per_litre = (40.0..=200.0).contains(&value) && value.fract() == 0.0;
                let grams_per_dl = (4.0..=20.0).contains(&value) && !grams_per_litre;
                if grams_per_litre && second >= 20.0 && value - second >= 20.0
                    || grams_per_dl && second >= 2.0 && value - second >= 2.0
                {
                    out.push((i, Feature::HbDrop));
                }
            }
        }
        // "5+3 by LMP", "GA 6+2", "8+1/40": weeks+days of an early pregnancy
        let plus_days = doc.toks.get(i + 1).filter(|t| {
            same_sentence(i + 1)
                && doc.lower.get(doc.toks[i].end..t.start) == Some("+")
                && doc.word(i + 1).len() == 1
        });
        if unit.is_empty() && (3.0..=14.0).contains(&value) && value.fract() == 0.0 {
            if let Some((d, "")) = plus_days.and_then(|_| number(next)) {
                let dated =
                    (i + 2..i + 5).any(|j| {
                        same_sentence(j)
                            && matches!(
                                doc.word(j),
                                "lmp"
                                    | "dates"
                                    | "pregnant"
                                    | "gestation"
                                    | "weeks"
                                    | "wks"
                                    | "40"
                                    | "scan"
                                    | "edd"
                            )
                    }) || cue_before(doc, i, 2, &["ga", "gestation", "pregnant", "g1p0", "lmp"]);
                if d <= 6.0 && dated {
                    out.push((i, Feature::EarlyPregnancy));
                }
            }
        }
        // neutropenia: "neutrophils 0.3", "ANC 400"
        if cue_right_before(doc, i, 3, NEUTROPHIL_CUES)
            && unit.is_empty()
            && (value < 1.0 || (10.0..1000.0).contains(&value) && value.fract() == 0.0)
        {
            out.push((i, Feature::Neutropenia));
        }
        // "6/52 by dates", "7/52 pregnant": weeks as a fraction of 52 with a pregnancy word
        if unit.is_empty()
            && next == "52"
            && doc.toks.get(i + 1).is_some_and(|t| t.slash_before)
            && (3.0..=14.0).contains(&value)
            && (i + 2..i + 5).any(|j| {
                same_sentence(j)
                    && matches!(
                        doc.word(j),
                        "dates"
                            | "pregnant"
                            | "gestation"
                            | "pregnancy"
                            | "amenorrhoea"
                            | "amenorrhea"
                    )
            })
        {
            out.push((i, Feature::EarlyPregnancy));
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
            "spiked 38.3 at 0400",
            "temperature 38,7",
        ] {
            // a decimal in range is also a bare temperature (used by the infant rule only)
            let f: Vec<Feature> = features(t)
                .into_iter()
                .filter(|f| *f != Feature::BareTemp)
                .collect();
            assert_eq!(f, [Feature::FeverTemp], "{t}");
        }
        for t in [
            "T 37.2",
            "fever for 2 days",
            "temp 99.5F",
            "38.5 kg",
            "on day 38",
            "temp normal, weight 39.5 kg",
            "fever for 39 hours",
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
        assert_eq!(features("BP 70 systolic"), [Feature::HypotensionBp]);
        assert_eq!(features("systolic 82"), [Feature::HypotensionBp]);
        assert!(features("BP 120 systolic").is_empty());
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
            "Infant 7 weeks",
            "Baby girl, 5 weeks",
            "6/52 old",
            "2/12 old",
            "11/52 infant",
            "born 7 weeks ago",
            "she's 7 weeks now",
            "he's 10 days",
        ] {
            assert_eq!(features(t), [Feature::InfantUnder3Months], "{t}");
        }
        for t in [
            "4 month old",
            "10 week old kitten",
            "seen 2/12",
            "4/12 old",
            "3 months old",
            "fever for 2 days",
            "6 y/o",
            "14 wk old",
        ] {
            assert!(features(t).is_empty(), "{t}");
        }
    }

    #[test]
    fn lactate_troponin_neutrophils() {
        for t in [
            "lactate 4.1",
            "lac 3.2",
            "lactate of 2.5",
            "lactate 22 mg/dL",
        ] {
            assert_eq!(features(t), [Feature::HighLactate], "{t}");
        }
        for t in ["lactate 1.1", "lactate 12 mg/dL", "lactate pending"] {
            assert!(features(t).is_empty(), "{t}");
        }
        for t in [
            "Troponin 0.04 -> 0.31 at 3h",
            "trop 45 then 310",
            "hs trop 12 -> 88",
        ] {
            assert!(features(t).contains(&Feature::TroponinRise), "{t}");
        }
        for t in ["troponin 0.01 -> 0.01", "trop 310 -> 45", "troponin 14"] {
            assert!(!features(t).contains(&Feature::TroponinRise), "{t}");
        }
        for t in [
            "neutrophils 0.3",
            "ANC 400",
            "neuts 0.8",
            "ANC yesterday was 300",
        ] {
            assert_eq!(features(t), [Feature::Neutropenia], "{t}");
        }
        for t in [
            "neutrophils 4.5",
            "ANC 2400",
            "neutrophils 1.5",
            "neut 5.2 plt 300",
        ] {
            assert!(features(t).is_empty(), "{t}");
        }
    }

    #[test]
    fn bare_temperatures_spelled_ages_and_first_lactate() {
        for t in [
            "parents measured 38.5 under the arm",
            "twin B 38.4 on two readings",
            "one of them is 38.2",
        ] {
            assert!(features(t).contains(&Feature::BareTemp), "{t}");
        }
        for t in [
            "Hct 38.5",
            "born at 38.5 weeks",
            "GA 38.4",
            "38 weeks",
            "weight 39.5 kg",
            "seen 38.5/40",
        ] {
            assert!(!features(t).contains(&Feature::BareTemp), "{t}");
        }
        assert_eq!(
            features("axillary 38.0"),
            [Feature::FeverTemp, Feature::BareTemp]
        );
        assert_eq!(features("temp's 39"), [Feature::FeverTemp]);
        assert!(features("temp 37.2, BP 104/60").is_empty());
        assert_eq!(features("Ten-week-old twin"), [Feature::InfantUnder3Months]);
        assert!(features("ten year old").is_empty());
        assert!(features("two week old kitten").is_empty());
        assert_eq!(
            features("lactate 5.1 drawn 10 min after"),
            [Feature::HighLactate]
        );
    }

    #[test]
    fn early_pregnancy() {
        for t in [
            "7 weeks pregnant",
            "GA 6 wks",
            "pregnant at 8 weeks",
            "6/40",
            "about 6 weeks along",
            "I'm 6 weeks, scan booked",
            "6/52 by dates",
            "6 weeks by dates",
            "7 wks by LMP",
        ] {
            assert_eq!(features(t), [Feature::EarlyPregnancy], "{t}");
        }
        for t in [
            "32 weeks pregnant",
            "cough for 6 weeks",
            "34/40",
            "30 weeks along",
            "I'm 30 weeks",
            "34/52 by dates",
            "seen 6/52 ago",
            "22+3 weeks",
            "GCS 5+3",
            "5+3",
        ] {
            assert!(features(t).is_empty(), "{t}");
        }
        for t in ["5+3 by LMP", "GA 6+2", "8+1/40", "7+0 weeks"] {
            assert!(features(t).contains(&Feature::EarlyPregnancy), "{t}");
        }
    }

    #[test]
    fn child_heart_rate_limits() {
        // a febrile child's heart rate is judged against the limit for the age
        for t in [
            "9yo viral URTI, T 38.5, HR 105",
            "9yo, HR 118",
            "4yo ear pain, HR 120",
            "my 4 year old, pulse 135",
            "18 month old, HR 150",
        ] {
            assert!(!features(t).contains(&Feature::TachycardiaHr), "{t}");
        }
        for t in [
            "HR 105",
            "4yo, HR 165",
            "9 y/o, HR 140",
            "9yo post tonsillectomy, HR 130",
            "62M, HR 118",
            "4yo with mum (34 years old), HR 120",
        ] {
            assert!(features(t).contains(&Feature::TachycardiaHr), "{t}");
        }
        assert_eq!(child_age_years(&tokenize("4yo and 9 year old")), Some(9.0));
        assert_eq!(child_age_years(&tokenize("BP 4/5 years")), None);
    }

    #[test]
    fn haemoglobin_drop() {
        for t in [
            "Hb 128 -> 79",
            "Hb 11.2 to 8.9",
            "Hb dropped from 120 to 85",
            "haemoglobin 132 then 98",
        ] {
            assert!(features(t).contains(&Feature::HbDrop), "{t}");
        }
        for t in [
            "Hb 128 MCV 79",
            "Hb 128 -> 118",
            "Hb 79 -> 128",
            "Hb 11.2 to 10.1",
            "Hb 94",
            "BP 128/79",
        ] {
            assert!(!features(t).contains(&Feature::HbDrop), "{t}");
        }
    }

    #[test]
    fn day_of_life_and_wrapped_ages() {
        for t in [
            "Day 12 of life, pyrexial",
            "day 5 baby back in",
            "pt 11/52\n old",
        ] {
            assert!(features(t).contains(&Feature::InfantUnder3Months), "{t}");
        }
        for t in [
            "day 3 of illness",
            "day 120 of life",
            "day 5 of antibiotics",
            "7/52 history",
        ] {
            assert!(!features(t).contains(&Feature::InfantUnder3Months), "{t}");
        }
    }
}
