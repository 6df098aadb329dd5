//! Identifying numbers: values after a label ("MRN: 12345", "insurance ID HP-987654"), social
//! security numbers by their shape, unlabelled codes that can only be identifiers (long digit runs,
//! letter prefixes with long digit runs), and ages over 89.

use super::contact::{is_fax_context, phone_at};
use super::Ctx;
use crate::text::Token;
use crate::types::PhiType;
use rustc_hash::FxHashMap;
use std::sync::LazyLock;

const P_LABELLED: u8 = 10;
const P_SSN: u8 = 8;
const P_AGE: u8 = 7;
const P_GENERIC: u8 = 3;

/// A label phrase (lower-case words) and the type of the value that follows it.
pub(super) struct Labels {
    by_first: FxHashMap<&'static str, Vec<(Vec<&'static str>, PhiType)>>,
}

impl Labels {
    fn new(table: &[(&'static str, PhiType)]) -> Self {
        let mut by_first: FxHashMap<&'static str, Vec<(Vec<&'static str>, PhiType)>> =
            FxHashMap::default();
        for (phrase, t) in table {
            let words: Vec<&'static str> = phrase.split(' ').collect();
            if let Some(first) = words.first() {
                by_first.entry(first).or_default().push((words, *t));
            }
        }
        for list in by_first.values_mut() {
            list.sort_by_key(|(w, _)| std::cmp::Reverse(w.len()));
        }
        Self { by_first }
    }

    /// The longest label at token `i`: (one past its last token, type). Words of a label may be
    /// separated by `'`, `-` or `/` ("driver's license", "s/n").
    fn at(&self, ctx: &Ctx<'_>, i: usize) -> Option<(usize, PhiType)> {
        let list = self.by_first.get(ctx.lw(i))?;
        'label: for (words, t) in list {
            let mut j = i + 1;
            for w in &words[1..] {
                while ctx.toks.get(j).is_some_and(|x| {
                    x.is_punct('\'') || x.is_punct('’') || x.is_punct('-') || x.is_punct('/')
                }) {
                    j += 1;
                }
                if ctx.lw(j) != *w {
                    continue 'label;
                }
                j += 1;
            }
            return Some((j, *t));
        }
        None
    }
}

use PhiType as T;

pub(super) static LABELS: LazyLock<Labels> = LazyLock::new(|| {
    Labels::new(&[
        ("mrn", T::MedicalRecordNumber),
        ("medical record number", T::MedicalRecordNumber),
        ("medical record no", T::MedicalRecordNumber),
        ("medical record", T::MedicalRecordNumber),
        ("med rec", T::MedicalRecordNumber),
        ("medrec", T::MedicalRecordNumber),
        ("health id", T::HealthPlanBeneficiaryNumber),
        ("record number", T::MedicalRecordNumber),
        ("record no", T::MedicalRecordNumber),
        ("chart number", T::MedicalRecordNumber),
        ("chart no", T::MedicalRecordNumber),
        ("chart", T::MedicalRecordNumber),
        ("hospital number", T::MedicalRecordNumber),
        ("patient number", T::MedicalRecordNumber),
        ("mr number", T::MedicalRecordNumber),
        ("insurance", T::HealthPlanBeneficiaryNumber),
        ("insurance id", T::HealthPlanBeneficiaryNumber),
        ("insurance number", T::HealthPlanBeneficiaryNumber),
        ("insurance no", T::HealthPlanBeneficiaryNumber),
        ("insurance policy", T::HealthPlanBeneficiaryNumber),
        ("insurance policy number", T::HealthPlanBeneficiaryNumber),
        ("policy", T::HealthPlanBeneficiaryNumber),
        ("policy number", T::HealthPlanBeneficiaryNumber),
        ("policy no", T::HealthPlanBeneficiaryNumber),
        ("member id", T::HealthPlanBeneficiaryNumber),
        ("member number", T::HealthPlanBeneficiaryNumber),
        ("member no", T::HealthPlanBeneficiaryNumber),
        ("subscriber id", T::HealthPlanBeneficiaryNumber),
        ("subscriber number", T::HealthPlanBeneficiaryNumber),
        ("health plan", T::HealthPlanBeneficiaryNumber),
        ("health plan number", T::HealthPlanBeneficiaryNumber),
        ("health plan id", T::HealthPlanBeneficiaryNumber),
        (
            "health plan beneficiary number",
            T::HealthPlanBeneficiaryNumber,
        ),
        ("plan id", T::HealthPlanBeneficiaryNumber),
        ("plan number", T::HealthPlanBeneficiaryNumber),
        ("beneficiary", T::HealthPlanBeneficiaryNumber),
        ("beneficiary number", T::HealthPlanBeneficiaryNumber),
        ("beneficiary id", T::HealthPlanBeneficiaryNumber),
        ("medicare", T::HealthPlanBeneficiaryNumber),
        ("medicare number", T::HealthPlanBeneficiaryNumber),
        ("medicare id", T::HealthPlanBeneficiaryNumber),
        ("medicaid", T::HealthPlanBeneficiaryNumber),
        ("medicaid number", T::HealthPlanBeneficiaryNumber),
        ("medicaid id", T::HealthPlanBeneficiaryNumber),
        ("group number", T::HealthPlanBeneficiaryNumber),
        ("hicn", T::HealthPlanBeneficiaryNumber),
        ("mbi", T::HealthPlanBeneficiaryNumber),
        ("account", T::AccountNumber),
        ("account number", T::AccountNumber),
        ("account no", T::AccountNumber),
        ("acct", T::AccountNumber),
        ("acct no", T::AccountNumber),
        ("billing number", T::AccountNumber),
        ("billing account", T::AccountNumber),
        ("claim number", T::AccountNumber),
        ("claim", T::AccountNumber),
        ("invoice", T::AccountNumber),
        ("invoice number", T::AccountNumber),
        ("card number", T::AccountNumber),
        ("credit card", T::AccountNumber),
        ("license", T::CertificateLicenseNumber),
        ("licence", T::CertificateLicenseNumber),
        ("license number", T::CertificateLicenseNumber),
        ("licence number", T::CertificateLicenseNumber),
        ("license no", T::CertificateLicenseNumber),
        ("driver s license", T::CertificateLicenseNumber),
        ("drivers license", T::CertificateLicenseNumber),
        ("driver s licence", T::CertificateLicenseNumber),
        ("dea", T::CertificateLicenseNumber),
        ("dea number", T::CertificateLicenseNumber),
        ("npi", T::CertificateLicenseNumber),
        ("npi number", T::CertificateLicenseNumber),
        ("certificate", T::CertificateLicenseNumber),
        ("certificate number", T::CertificateLicenseNumber),
        ("certification number", T::CertificateLicenseNumber),
        ("registration number", T::CertificateLicenseNumber),
        ("permit", T::CertificateLicenseNumber),
        ("permit number", T::CertificateLicenseNumber),
        ("vin", T::VehicleIdentifier),
        ("vehicle identification number", T::VehicleIdentifier),
        ("license plate", T::VehicleIdentifier),
        ("licence plate", T::VehicleIdentifier),
        ("plate", T::VehicleIdentifier),
        ("plate number", T::VehicleIdentifier),
        ("serial", T::DeviceIdentifier),
        ("serial number", T::DeviceIdentifier),
        ("serial no", T::DeviceIdentifier),
        ("s n", T::DeviceIdentifier),
        ("device id", T::DeviceIdentifier),
        ("device identifier", T::DeviceIdentifier),
        ("device serial", T::DeviceIdentifier),
        ("udi", T::DeviceIdentifier),
        ("imei", T::DeviceIdentifier),
        ("implant id", T::DeviceIdentifier),
        ("ssn", T::SocialSecurityNumber),
        ("ss", T::SocialSecurityNumber),
        ("social security", T::SocialSecurityNumber),
        ("social security number", T::SocialSecurityNumber),
        ("social security no", T::SocialSecurityNumber),
        ("phone", T::PhoneNumber),
        ("phone number", T::PhoneNumber),
        ("phone no", T::PhoneNumber),
        ("tel", T::PhoneNumber),
        ("telephone", T::PhoneNumber),
        ("cell", T::PhoneNumber),
        ("cell phone", T::PhoneNumber),
        ("mobile", T::PhoneNumber),
        ("contact", T::PhoneNumber),
        ("contact number", T::PhoneNumber),
        ("pager", T::PhoneNumber),
        ("call", T::PhoneNumber),
        ("ph", T::PhoneNumber),
        ("fax", T::FaxNumber),
        ("fax number", T::FaxNumber),
        ("facsimile", T::FaxNumber),
        ("id", T::UniqueIdentifier),
        ("identifier", T::UniqueIdentifier),
        ("patient id", T::UniqueIdentifier),
        ("site id", T::UniqueIdentifier),
        ("case id", T::UniqueIdentifier),
        ("case number", T::UniqueIdentifier),
        ("study id", T::UniqueIdentifier),
        ("subject id", T::UniqueIdentifier),
        ("participant id", T::UniqueIdentifier),
        ("encounter", T::UniqueIdentifier),
        ("encounter id", T::UniqueIdentifier),
        ("encounter number", T::UniqueIdentifier),
        ("visit id", T::UniqueIdentifier),
        ("visit number", T::UniqueIdentifier),
        ("specimen", T::UniqueIdentifier),
        ("specimen id", T::UniqueIdentifier),
        ("accession", T::UniqueIdentifier),
        ("accession number", T::UniqueIdentifier),
        ("order number", T::UniqueIdentifier),
        ("order id", T::UniqueIdentifier),
        ("reference number", T::UniqueIdentifier),
        ("ref", T::UniqueIdentifier),
        ("rx", T::UniqueIdentifier),
        ("rx number", T::UniqueIdentifier),
        ("prescription number", T::UniqueIdentifier),
        ("prescription id", T::UniqueIdentifier),
        ("employee id", T::UniqueIdentifier),
        ("badge", T::UniqueIdentifier),
        ("badge number", T::UniqueIdentifier),
        ("passport", T::UniqueIdentifier),
        ("passport number", T::UniqueIdentifier),
        ("confirmation number", T::UniqueIdentifier),
        ("tracking number", T::UniqueIdentifier),
        ("uid", T::UniqueIdentifier),
    ])
});

/// Words between a label and its value ("MRN is 123", "record number: 123").
fn is_filler(ctx: &Ctx<'_>, i: usize) -> bool {
    let t = match ctx.toks.get(i) {
        Some(t) => t,
        None => return false,
    };
    if t.is_punct(':') || t.is_punct('=') || t.is_punct('(') || t.is_punct('-') || t.is_punct('.') {
        return true;
    }
    if t.is_punct('#') {
        // '#' attached to the value belongs to it ("#SF-998877")
        return ctx.toks.get(i + 1).is_some_and(|n| n.space_before);
    }
    matches!(
        ctx.lw(i),
        "number"
            | "no"
            | "num"
            | "nr"
            | "is"
            | "of"
            | "was"
            | "id"
            | "code"
            | "listed"
            | "as"
            | "reads"
            | "are"
    )
}

/// The longest run of attached tokens an identifier can span ("#AB-123-456-789/1").
const MAX_CHUNK_TOKENS: usize = 24;

/// The attached run of tokens starting at `k` (no white space inside, at most
/// [`MAX_CHUNK_TOKENS`]), without trailing punctuation: (first token, one past the last).
fn chunk(toks: &[Token], k: usize) -> (usize, usize) {
    let mut j = k + 1;
    while j - k < MAX_CHUNK_TOKENS && toks.get(j).is_some_and(|t| !t.space_before) {
        j += 1;
    }
    while j > k + 1 && toks[j - 1].kind != crate::text::Kind::Word {
        j -= 1;
    }
    (k, j)
}

fn chunk_counts(toks: &[Token], i: usize, j: usize) -> (u32, u32) {
    toks[i..j].iter().fold((0, 0), |(a, d), t| {
        (a + u32::from(t.alpha), d + u32::from(t.digits))
    })
}

pub(super) fn find(ctx: &mut Ctx<'_>) {
    labelled(ctx);
    ssns(ctx);
    generic(ctx);
    ages(ctx);
}

fn labelled(ctx: &mut Ctx<'_>) {
    let mut i = 0;
    while i < ctx.toks.len() {
        if !ctx.toks[i].is_alpha() {
            i += 1;
            continue;
        }
        let Some((after, t)) = LABELS.at(ctx, i) else {
            i += 1;
            continue;
        };
        let mut k = after;
        let mut skipped = 0;
        while skipped < 4 && is_filler(ctx, k) {
            k += 1;
            skipped += 1;
        }
        let Some(first) = ctx.toks.get(k) else { break };
        let start = first.start;
        if matches!(t, T::PhoneNumber | T::FaxNumber) {
            if let Some(end) = phone_at(ctx.text.as_bytes(), start) {
                let t = if t == T::FaxNumber || is_fax_context(&ctx.lower, start) {
                    T::FaxNumber
                } else {
                    T::PhoneNumber
                };
                ctx.push(start, end, t, 0.95, P_LABELLED);
                i = k + 1;
                continue;
            }
        }
        let (ci, mut cj) = chunk(&ctx.toks, k);
        // an identifier is letters, digits and a few separators
        let id_like = ctx.toks[ci..cj].iter().all(|t| {
            t.is_word() && t.alpha + t.digits == u16::try_from(t.len()).unwrap_or(0)
                || matches!(
                    t.kind,
                    crate::text::Kind::Punct('-' | '#' | '/' | '.' | '_')
                )
        });
        if !id_like {
            i += 1;
            continue;
        }
        let (alpha, mut digit_count) = chunk_counts(&ctx.toks, ci, cj);
        // a number written in groups: "123 456 789"
        if alpha == 0 {
            while cj < ctx.toks.len()
                && ctx.toks[cj].is_number()
                && ctx.toks[cj].space_before
                && digit_count < 16
            {
                let (_, nj) = chunk(&ctx.toks, cj);
                let (a, d) = chunk_counts(&ctx.toks, cj, nj);
                if a > 0 {
                    break;
                }
                digit_count += d;
                cj = nj;
            }
        }
        let plausible =
            (digit_count >= 3 || (digit_count >= 2 && alpha >= 2)) && digit_count + alpha <= 40;
        let is_phone_label = matches!(t, T::PhoneNumber | T::FaxNumber);
        if plausible && (!is_phone_label || digit_count >= 7) {
            // "#" attached before the value belongs to it
            ctx.push_tokens(ci, cj, t, 0.95, P_LABELLED);
            i = cj;
            continue;
        }
        i += 1;
    }
}

fn ssns(ctx: &mut Ctx<'_>) {
    let toks = &ctx.toks;
    let mut found = Vec::new();
    for i in 0..toks.len().saturating_sub(4) {
        let w = |k: usize| &toks[i + k];
        let shape = w(0).is_number()
            && w(0).len() == 3
            && w(1).is_punct('-')
            && w(2).is_number()
            && w(2).len() == 2
            && w(3).is_punct('-')
            && w(4).is_number()
            && w(4).len() == 4
            && (1..5).all(|k| !w(k).space_before);
        let before_ok = i == 0 || toks[i].space_before || !toks[i - 1].is_word();
        let after_ok = toks
            .get(i + 5)
            .is_none_or(|n| n.space_before || !(n.is_word() || n.is_punct('-')));
        if shape && before_ok && after_ok {
            found.push((i, i + 5));
        }
    }
    for (i, j) in found {
        ctx.push_tokens(i, j, T::SocialSecurityNumber, 0.9, P_SSN);
    }
}

const UNITS: &[&str] = &[
    "mg", "mcg", "ug", "g", "kg", "ml", "l", "dl", "iu", "u", "units", "unit", "mmol", "meq", "mm",
    "cm", "m", "km", "cells", "copies", "mmhg", "bpm", "pg", "ng", "ms", "sec", "min", "hrs", "hr",
    "h", "mos", "days", "steps", "kcal", "cal", "lbs", "lb", "oz", "x", "k",
];

fn is_unit(word: &str) -> bool {
    UNITS.contains(&word)
}

/// Codes that can only be identifiers: long digit runs, letter prefixes with four or more digits.
fn generic(ctx: &mut Ctx<'_>) {
    let toks = &ctx.toks;
    let mut found = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !(toks[i].space_before
            || i == 0
            || toks[i - 1].is_punct('(')
            || toks[i - 1].is_punct('['))
        {
            i += 1;
            continue;
        }
        let (ci, cj) = chunk(toks, i);
        let next = cj.max(i + 1);
        let (mut ci, cj) = (ci, cj);
        if toks[ci].is_punct('(') || toks[ci].is_punct('[') {
            ci += 1;
        }
        if ci >= cj {
            i = next;
            continue;
        }
        let mut ok = true;
        let (mut alpha, mut digits, mut hyphens, mut hash) = (0u32, 0u32, 0u32, false);
        let mut letter_words = Vec::new();
        for (k, t) in toks[ci..cj].iter().enumerate() {
            match t.kind {
                crate::text::Kind::Word => {
                    alpha += u32::from(t.alpha);
                    digits += u32::from(t.digits);
                    if t.alpha > 0 {
                        letter_words.push(ci + k);
                    }
                }
                crate::text::Kind::Punct('-') => hyphens += 1,
                crate::text::Kind::Punct('#') if k == 0 => hash = true,
                _ => ok = false,
            }
        }
        let unit_after = cj < toks.len() && is_unit(ctx.lw(cj));
        let unit_inside = letter_words.iter().any(|&k| {
            let t = &toks[k];
            let w = &ctx.lower[t.start..t.end];
            is_unit(w.trim_start_matches(|c: char| c.is_ascii_digit()))
        });
        let is_id = ok
            && !unit_after
            && !unit_inside
            && digits + alpha <= 32
            && if alpha == 0 {
                digits >= 7
                    || (digits >= 6 && (hyphens >= 2 || hash))
                    || (hash && digits >= 4)
                    || (digits == 6 && hyphens == 0)
            } else {
                alpha <= 8 && (digits >= 5 || (digits >= 4 && (hyphens > 0 || hash)))
            };
        if is_id {
            found.push((ci, cj));
        }
        i = next;
    }
    for (i, j) in found {
        ctx.push_tokens(i, j, T::UniqueIdentifier, 0.6, P_GENERIC);
    }
}

/// Ages over 89 ("92-year-old", "93 yo", "aged 95"): the number only, so it can become "90+".
fn ages(ctx: &mut Ctx<'_>) {
    let mut found = Vec::new();
    for i in 0..ctx.toks.len() {
        let t = ctx.toks[i];
        if t.digits == 0 || t.digits > 3 || t.kind != crate::text::Kind::Word {
            continue;
        }
        let w = ctx.lw(i);
        let digits_end = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
        let Ok(n) = w[..digits_end].parse::<u32>() else {
            continue;
        };
        if !(90..=130).contains(&n) {
            continue;
        }
        let suffix = &w[digits_end..];
        let attached_age = matches!(suffix, "yo" | "y" | "yr" | "yrs" | "yof" | "yom" | "s");
        let mut j = i + 1;
        if ctx.is_punct(j, '-') {
            j += 1;
        }
        let next = ctx.lw(j);
        let after_age = suffix.is_empty()
            && (matches!(
                next,
                "year" | "years" | "yo" | "yr" | "yrs" | "y" | "yof" | "yom"
            ) || (next == "y" && ctx.is_punct(j + 1, '/')));
        let before = ctx.lw_before(i, 1);
        let before_age = suffix.is_empty()
            && (matches!(before, "aged" | "age" | "ages")
                || (before == ":" && matches!(ctx.lw_before(i, 2), "age" | "aged")));
        if (suffix == "s" && matches!(before, "his" | "her" | "their" | "early" | "late" | "mid"))
            || (attached_age && suffix != "s")
            || after_age
            || before_age
        {
            found.push((t.start, t.start + digits_end));
        }
    }
    for (s, e) in found {
        ctx.push(s, e, T::Age, 0.9, P_AGE);
    }
}
