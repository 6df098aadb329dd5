//! Geographic units smaller than a state: named facilities ("St. Mary's Hospital", "our Dallas
//! facility"), well-known health systems, cities, counties, street addresses and ZIP codes.
//! States themselves are not PHI under Safe Harbor and are never tagged.

use super::Ctx;
use crate::dict::{
    CITIES, COUNTIES, FACILITY_HEADS, FACILITY_PREFIXES, INSTITUTIONS, LOWER_FACILITY_WORDS,
    NOT_NAME, STATES, STREET_SUFFIXES,
};
use crate::types::PhiType;

const P_ADDRESS: u8 = 6;
const P_FACILITY: u8 = 6;
const P_CITY: u8 = 4;

/// Facility words that are strong enough on their own ("X Hospital"); the others ("X Health",
/// "X Center") need a place, a saint or a known name before them.
const STRONG_HEADS: &[&str] = &[
    "hospital",
    "hospitals",
    "clinic",
    "clinics",
    "infirmary",
    "hospice",
    "healthcare",
    "sanatorium",
    "sanitarium",
];

/// Words before "from"/"by" that make what follows an author, not a place of care
/// ("recommendations from Mayo Clinic").
const AUTHOR_WORDS: &[&str] = &[
    "recommendations",
    "recommendation",
    "guidelines",
    "guideline",
    "guidance",
    "study",
    "studies",
    "data",
    "research",
    "researchers",
    "experts",
    "criteria",
    "protocol",
    "protocols",
    "trial",
    "trials",
    "publication",
    "statement",
    "consensus",
    "evidence",
    "article",
    "paper",
];

pub(super) fn find(ctx: &mut Ctx<'_>) {
    let mut found: Vec<(usize, usize, f32, u8)> = Vec::new();
    let n = ctx.toks.len();
    let mut i = 0;
    while i < n {
        if let Some(end) = facility_ending_at(ctx, i) {
            found.push(end);
        }
        i += 1;
    }
    let mut i = 0;
    while i < n {
        if let Some((j, conf, prio)) = address(ctx, i)
            .or_else(|| saint(ctx, i))
            .or_else(|| compound_facility(ctx, i))
            .or_else(|| institution(ctx, i))
            .or_else(|| county(ctx, i))
            .or_else(|| city(ctx, i))
            .or_else(|| zip(ctx, i))
        {
            found.push((i, j, conf, prio));
            i = j;
        } else {
            i += 1;
        }
    }
    for (i, j, conf, prio) in found {
        ctx.push_tokens(i, j, PhiType::GeographicLocation, conf, prio);
    }
}

fn authored(ctx: &Ctx<'_>, i: usize) -> bool {
    let b1 = ctx.lw_before(i, 1);
    let (by, k) = if b1 == "the" {
        (ctx.lw_before(i, 2), 2)
    } else {
        (b1, 1)
    };
    (matches!(by, "from" | "by" | "of") && AUTHOR_WORDS.contains(&ctx.lw_before(i, k + 1)))
        || by == "per"
        || (by == "to" && ctx.lw_before(i, k + 1) == "according")
}

/// Is token `i` a capitalised word that can be part of a facility name?
fn name_word(ctx: &Ctx<'_>, i: usize) -> bool {
    let Some(t) = ctx.toks.get(i) else {
        return false;
    };
    if !t.is_word() || !t.cap {
        return false;
    }
    let w = ctx.lw(i);
    !matches!(
        w,
        "the"
            | "a"
            | "an"
            | "at"
            | "in"
            | "to"
            | "from"
            | "our"
            | "of"
            | "and"
            | "for"
            | "on"
            | "with"
            | "by"
            | "seen"
            | "admitted"
            | "visited"
            | "treated"
            | "was"
            | "is"
            | "he"
            | "she"
            | "dr"
            | "mr"
            | "mrs"
            | "ms"
            | "what"
            | "how"
            | "latest"
            | "current"
            | "new"
            | "patient"
            | "pt"
    )
}

/// A facility whose head word ("Hospital", "Medical Center") starts at token `h`: the whole name
/// with the capitalised words before it, and ", City[, ST]" after it.
fn facility_ending_at(ctx: &Ctx<'_>, h: usize) -> Option<(usize, usize, f32, u8)> {
    let head = ctx.toks.get(h)?;
    if !head.is_word() || !head.cap {
        return None;
    }
    let head_end = FACILITY_HEADS.longest_at(&ctx.lower, &ctx.toks, h)?;
    // walk back over the name: capitalised words, "St.", "Mary's", "Cedars-Sinai", "and", "of"
    let mut s = h;
    let mut words = 0;
    let mut known = false;
    loop {
        if s == 0 {
            break;
        }
        let p = s - 1;
        let t = ctx.toks[p];
        if t.is_word() && STRONG_HEADS.contains(&ctx.lw(p)) {
            // another facility ends here: "Mayo Clinic and Cleveland Clinic" are two
            break;
        }
        if t.is_word() && name_word(ctx, p) {
            let w = ctx.lw(p);
            known |= FACILITY_PREFIXES.contains(&w)
                || crate::dict::FIRST_NAMES.contains(w)
                || crate::dict::SURNAMES.contains(w)
                || CITIES.longest_at(&ctx.lower, &ctx.toks, p).is_some()
                || INSTITUTIONS.longest_at(&ctx.lower, &ctx.toks, p).is_some()
                || t.upper;
            s = p;
            words += 1;
            continue;
        }
        // "Mary's": s after an apostrophe joined to a capitalised word
        if t.is_word()
            && ctx.lw(p) == "s"
            && !t.space_before
            && p >= 2
            && crate::text::is_apostrophe(
                ctx.text[ctx.toks[p - 1].start..]
                    .chars()
                    .next()
                    .unwrap_or(' '),
            )
        {
            s = p - 1;
            continue;
        }
        if (t.is_punct('.') || t.is_punct('-') || t.is_punct('&')) && p > 0 && name_word(ctx, p - 1)
        {
            s = p;
            continue;
        }
        if t.is_punct('\'') || t.is_punct('’') {
            // "Women's": apostrophe after a word, with the s following it already consumed
            if p > 0 && ctx.toks[p - 1].is_word() {
                s = p;
                continue;
            }
        }
        if t.is_alpha()
            && matches!(ctx.lw(p), "and" | "of")
            && p > 0
            && name_word(ctx, p - 1)
            && words > 0
        {
            s = p;
            continue;
        }
        break;
    }
    // never start on a connector
    while s < h && !(ctx.toks[s].is_word() && name_word(ctx, s)) {
        s += 1;
    }
    // a capitalised first word of a sentence ("Compare Mayo Clinic") is not part of the name
    let sentence_start = s == 0
        || matches!(
            ctx.toks[s - 1].kind,
            crate::text::Kind::Punct('.' | '?' | '!' | ':' | ';')
        );
    if sentence_start && s + 1 < h && name_word(ctx, s + 1) && NOT_NAME.contains(ctx.lw(s)) {
        s += 1;
    }
    let head_word = ctx.lw(h);
    let strong = STRONG_HEADS.contains(&head_word) || head_end > h + 1;
    if s == h {
        // a head alone: "Hospital" is no name
        return None;
    }
    if !(strong || known) || authored(ctx, s) {
        return None;
    }
    let mut end = head_end;
    // "Hosp.", "Ctr."
    if ctx.is_punct(end, '.') && ctx.joined(end) && ctx.toks[end - 1].len() <= 4 {
        end += 1;
    }
    // "Hospital of the University of Pennsylvania"
    if ctx.lw(end) == "of" {
        let mut k = end + 1;
        if ctx.lw(k) == "the" {
            k += 1;
        }
        let mut last = None;
        while name_word(ctx, k) || (ctx.lw(k) == "of" && last.is_some()) {
            if name_word(ctx, k) {
                last = Some(k + 1);
            }
            k += 1;
        }
        if let Some(l) = last {
            end = l;
        }
    }
    end = place_suffix(ctx, end);
    Some((s, end, if strong { 0.9 } else { 0.75 }, P_FACILITY))
}

/// What may follow a facility's name and belongs to it: "Los Angeles" directly, ", Boston",
/// ", Baltimore, MD", " in Phoenix", " in NY".
fn place_suffix(ctx: &Ctx<'_>, end: usize) -> usize {
    if let Some(c) = city_words(ctx, end) {
        if ctx.joined(end) || ctx.toks[end].space_before {
            return with_state(ctx, c);
        }
    }
    if ctx.is_punct(end, ',') || ctx.lw(end) == "in" {
        if let Some(c) = city_words(ctx, end + 1) {
            return with_state(ctx, c);
        }
        if ctx.lw(end) == "in" {
            if let Some(st) = state_at(ctx, end + 1) {
                return st;
            }
        }
    }
    end
}

/// ", MD" or ", Maryland" (and a ZIP code) after a city.
fn with_state(ctx: &Ctx<'_>, end: usize) -> usize {
    if ctx.is_punct(end, ',') {
        if let Some(st) = state_at(ctx, end + 1) {
            if let Some((z, _, _)) = zip(ctx, st) {
                return z;
            }
            return st;
        }
    }
    end
}

/// Lower-case facility words after a place's name ("Chicago downtown clinic", "UCLA med
/// center"): one past them, or `j` when there are none.
fn lower_facility(ctx: &Ctx<'_>, j: usize) -> usize {
    for k in [j, j + 1] {
        let ok = (j..=k).all(|x| ctx.toks.get(x).is_some_and(|t| t.is_alpha() && !t.cap));
        if !ok {
            break;
        }
        if LOWER_FACILITY_WORDS.contains(&ctx.lw(k)) {
            // "med center", "medical center"
            if matches!(ctx.lw(k), "medical" | "med" | "health")
                && matches!(
                    ctx.lw(k + 1),
                    "center" | "centre" | "ctr" | "clinic" | "system"
                )
            {
                return k + 2;
            }
            return k + 1;
        }
    }
    j
}

/// A state name or postal code at `i`: one past it.
fn state_at(ctx: &Ctx<'_>, i: usize) -> Option<usize> {
    let t = ctx.toks.get(i)?;
    if t.is_alpha() && t.upper && t.len() == 2 && STATES.0.contains(ctx.word(i)) {
        return Some(i + 1);
    }
    if t.cap {
        return STATES.1.longest_at(&ctx.lower, &ctx.toks, i);
    }
    None
}

/// Capitalised words at `i` that are a city: one past them.
fn city_words(ctx: &Ctx<'_>, i: usize) -> Option<usize> {
    let t = ctx.toks.get(i)?;
    if !t.is_alpha() || !t.cap {
        return None;
    }
    if ctx.word(i) == "LA" {
        return Some(i + 1);
    }
    let j = CITIES.longest_at(&ctx.lower, &ctx.toks, i)?;
    // every word capitalised (connectors like "de" aside)
    let all_cap = (i..j).all(|k| {
        let t = &ctx.toks[k];
        !t.is_word()
            || t.cap
            || matches!(
                ctx.lw(k),
                "de" | "la" | "del" | "of" | "on" | "upon" | "du" | "le"
            )
    });
    all_cap.then_some(j)
}

fn institution(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    if !t.is_word() || !t.cap {
        return None;
    }
    let j = INSTITUTIONS.longest_at(&ctx.lower, &ctx.toks, i)?;
    let all_cap = (i..j).all(|k| {
        !ctx.toks[k].is_word() || ctx.toks[k].cap || matches!(ctx.lw(k), "and" | "of" | "s")
    });
    if !all_cap || authored(ctx, i) {
        return None;
    }
    // one-word names that are also ordinary words ("Mercy", "Providence", "Rush") need a
    // preposition of place before them
    if j == i + 1 && !t.upper && !place_preposition(ctx.lw_before(i, 1)) {
        return None;
    }
    let end = place_suffix(ctx, lower_facility(ctx, j));
    Some((end, 0.8, P_FACILITY - 1))
}

/// One word that joins a name and a facility word: "BronxCare", "MedStar", "ProHealth".
fn compound_facility(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    if !t.is_cap_word() || t.upper || t.len() < 6 {
        return None;
    }
    let w = ctx.word(i);
    let inner = w
        .char_indices()
        .skip(1)
        .filter(|(_, c)| c.is_uppercase())
        .map(|(k, _)| k)
        .last()?;
    let (head, tail) = (&w[..inner], &ctx.lw(i)[inner..]);
    let facility = matches!(
        tail,
        "care" | "health" | "med" | "medical" | "clinic" | "hospital" | "center" | "star"
    );
    (facility
        && head.len() >= 3
        && (place_preposition(ctx.lw_before(i, 1)) || lower_facility(ctx, i + 1) > i + 1))
        .then(|| (lower_facility(ctx, i + 1), 0.7, P_FACILITY - 1))
}

/// "St. Mary's", "Saint Luke's", "St. Jude" named alone: a hospital.
fn saint(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    if !t.cap || !matches!(ctx.lw(i), "st" | "saint") {
        return None;
    }
    let mut k = i + 1;
    if ctx.is_punct(k, '.') {
        k += 1;
    }
    if !name_word(ctx, k) || !crate::dict::FIRST_NAMES.contains(ctx.lw(k)) {
        return None;
    }
    let apostrophe = ctx.toks.get(k + 1).is_some_and(|a| {
        crate::text::is_apostrophe(ctx.text[a.start..].chars().next().unwrap_or(' '))
    });
    if apostrophe && ctx.lw(k + 2) == "s" && ctx.lw(k + 3) != "wort" {
        return Some((place_suffix(ctx, k + 3), 0.8, P_FACILITY - 1));
    }
    None
}

fn place_preposition(w: &str) -> bool {
    matches!(
        w,
        "in" | "at" | "@" | "from" | "near" | "to" | "around" | "outside" | "of" | "visited"
    )
}

fn city(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32, u8)> {
    let j = city_words(ctx, i)?;
    let t = ctx.toks[i];
    let single = (i..j).filter(|&k| ctx.toks[k].is_word()).count() == 1;
    let w = ctx.lw(i);
    let is_state = state_at(ctx, i) == Some(j) && w != "new";
    // "New York" is a city and a state: a city unless "State" follows
    if is_state && !(w == "new" && ctx.lw(j) != "state") {
        return None;
    }
    let before = ctx.lw_before(i, 1);
    let mut end = j;
    let followed_by_state = ctx.is_punct(j, ',') && state_at(ctx, j + 1).is_some();
    if followed_by_state {
        end = state_at(ctx, j + 1).unwrap_or(j);
    }
    let facility_end = lower_facility(ctx, j);
    let lower_facility = facility_end > j;
    if lower_facility {
        end = facility_end;
    }
    if single {
        if t.upper && t.len() <= 3 && w != "nyc" && !followed_by_state && !lower_facility {
            // "LA", "SF": only where a place is expected
            if !place_preposition(before) {
                return None;
            }
        }
        let ambiguous = NOT_NAME.contains(w)
            || crate::dict::FIRST_NAMES.contains(w)
            || crate::dict::SURNAMES.contains(w)
            || FACILITY_HEADS
                .longest_at(&ctx.lower, &ctx.toks, i)
                .is_some();
        if ambiguous && !(place_preposition(before) || followed_by_state || lower_facility) {
            return None;
        }
        // an eponym, not a place: "Framingham risk score", "Ottawa ankle rules"
        let eponym = |w: &str| {
            crate::dict::EPONYM_NOUNS.contains(&w)
                || matches!(w, "risk" | "heart" | "study" | "trial" | "equation")
        };
        let lower_next = ctx.toks.get(j).is_some_and(|t| t.is_alpha() && !t.cap);
        if eponym(ctx.lw(j)) || (lower_next && eponym(ctx.lw(j + 1))) {
            return None;
        }
        // a country is not PHI ("Brazil" is also a town in Indiana)
        if crate::dict::COUNTRIES.longest_at(&ctx.lower, &ctx.toks, i) == Some(j) {
            return None;
        }
        // an eponym or a name, not a place: "Wilson's disease", "Dr. Austin"
        if ctx.toks.get(j).is_some_and(|n| {
            crate::text::is_apostrophe(ctx.text[n.start..].chars().next().unwrap_or(' '))
        }) {
            return None;
        }
        if crate::dict::TITLES.contains(before)
            || (before == "." && crate::dict::TITLES.contains(ctx.lw_before(i, 2)))
        {
            return None;
        }
    }
    if authored(ctx, i) {
        return None;
    }
    Some((end, 0.8, P_CITY))
}

fn county(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    if !t.is_alpha() || !t.cap {
        return None;
    }
    let j = COUNTIES
        .longest_at(&ctx.lower, &ctx.toks, i)
        .unwrap_or(i + 1);
    let ok = (i..j).all(|k| !ctx.toks[k].is_word() || ctx.toks[k].cap);
    (ok && matches!(ctx.word(j), "County" | "Parish" | "Borough" | "county")).then_some((
        j + 1,
        0.9,
        P_ADDRESS,
    ))
}

/// "221B Baker Street", "1600 Pennsylvania Ave NW, Apt 4", "P.O. Box 123".
fn address(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    let w = ctx.lw(i);
    if w == "po" || (w == "p" && ctx.is_punct(i + 1, '.') && ctx.lw(i + 2) == "o") {
        let mut k = if w == "po" { i + 1 } else { i + 3 };
        if ctx.is_punct(k, '.') {
            k += 1;
        }
        if ctx.lw(k) == "box" && ctx.toks.get(k + 1).is_some_and(|n| n.digits > 0) {
            return Some((k + 2, 0.9, P_ADDRESS));
        }
        return None;
    }
    if !(t.is_word() && t.digits > 0 && t.digits <= 6 && t.alpha <= 1) || (i > 0 && !t.space_before)
    {
        return None;
    }
    let mut k = i + 1;
    let mut words = 0;
    // optional direction, then 1..4 capitalised words or ordinals ("5th Avenue")
    while words < 5 {
        let Some(n) = ctx.toks.get(k) else { break };
        if n.is_word() && (n.cap || (n.digits > 0 && n.alpha == 2)) {
            let lw = ctx.lw(k);
            if STREET_SUFFIXES.contains(lw) && words > 0 {
                let mut end = k + 1;
                if ctx.is_punct(end, '.') && ctx.joined(end) {
                    end += 1;
                }
                // a direction after the suffix and a unit
                if matches!(
                    ctx.word(end),
                    "NW" | "NE" | "SW" | "SE" | "N" | "S" | "E" | "W"
                ) {
                    end += 1;
                }
                let mut u = end;
                if ctx.is_punct(u, ',') {
                    u += 1;
                }
                if matches!(
                    ctx.lw(u),
                    "apt" | "apartment" | "suite" | "ste" | "unit" | "room" | "fl" | "floor"
                ) || ctx.is_punct(u, '#')
                {
                    let mut v = u + 1;
                    if ctx.is_punct(v, '.') || ctx.is_punct(v, '#') {
                        v += 1;
                    }
                    if ctx.toks.get(v).is_some_and(|x| x.is_word()) {
                        end = v + 1;
                    }
                }
                // ", Springfield, IL 62704"
                if ctx.is_punct(end, ',') {
                    if let Some(c) = city_words(ctx, end + 1) {
                        end = with_state(ctx, c);
                    }
                }
                return Some((end, 0.9, P_ADDRESS));
            }
            words += 1;
            k += 1;
            continue;
        }
        break;
    }
    None
}

/// A ZIP code after a state ("Boston, MA 02115") or a ZIP label.
fn zip(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    if !(t.is_number() && t.len() == 5) {
        return None;
    }
    let before = ctx.lw_before(i, 1);
    let after_state = i > 0 && state_at(ctx, i - 1) == Some(i);
    let labelled = matches!(before, "zip" | "zipcode" | "postcode")
        || (before == ":" && matches!(ctx.lw_before(i, 2), "zip" | "code"));
    if !(after_state || labelled || (before == "code" && ctx.lw_before(i, 2) == "zip")) {
        return None;
    }
    let mut end = i + 1;
    if ctx.is_punct(end, '-')
        && ctx.joined(end)
        && ctx
            .toks
            .get(end + 1)
            .is_some_and(|x| x.is_number() && x.len() == 4)
    {
        end += 2;
    }
    Some((end, 0.9, P_ADDRESS))
}
