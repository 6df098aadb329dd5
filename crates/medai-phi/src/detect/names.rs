//! Person names: a title and what follows it ("Dr. Emily Hart", "Mrs. L. Hernandez"), a census
//! first name followed by a surname or an initial ("Mary Johnson", "Anna S.", "Jane A. Doe"), and
//! a first name alone where the text says it is one ("a patient named Emily").
//! A capitalised word alone is never taken for a surname: "Wilson's disease" and "Babinski sign"
//! are not people.

use super::Ctx;
use crate::dict::{EPONYM_NOUNS, FACILITY_HEADS, FIRST_NAMES, NOT_NAME, SURNAMES, TITLES};
use crate::text::is_apostrophe;
use crate::types::PhiType;

const P_TITLED: u8 = 5;
const P_NAME: u8 = 4;

pub(super) fn find(ctx: &mut Ctx<'_>) {
    let mut found: Vec<(usize, usize, f32, u8)> = Vec::new();
    let mut i = 0;
    while i < ctx.toks.len() {
        if let Some(hit) = titled(ctx, i).or_else(|| first_name(ctx, i)) {
            found.push(hit);
            i = hit.1;
        } else {
            i += 1;
        }
    }
    for (i, j, conf, prio) in found {
        ctx.push_tokens(i, j, PhiType::Name, conf, prio);
    }
}

/// A word that can be part of a name: capitalised letters, not a known non-name, not a facility
/// word.
fn name_part(ctx: &Ctx<'_>, i: usize) -> bool {
    let Some(t) = ctx.toks.get(i) else {
        return false;
    };
    if !t.is_cap_word() || t.len() < 2 {
        return false;
    }
    let w = ctx.lw(i);
    !NOT_NAME.contains(w)
        && FACILITY_HEADS
            .longest_at(&ctx.lower, &ctx.toks, i)
            .is_none()
        && !TITLES.contains(w)
}

/// An initial at `i` ("S." or "S" before a capitalised word): one past it.
fn initial(ctx: &Ctx<'_>, i: usize) -> Option<usize> {
    let t = ctx.toks.get(i)?;
    if !(t.is_alpha() && t.upper && t.len() == 1) {
        return None;
    }
    if ctx.is_punct(i + 1, '.') && ctx.joined(i + 1) {
        return Some(i + 2);
    }
    // "Paul M's case"
    let possessive = ctx
        .toks
        .get(i + 1)
        .is_some_and(|a| is_apostrophe(ctx.text[a.start..].chars().next().unwrap_or(' ')))
        && ctx.joined(i + 1)
        && ctx.lw(i + 2) == "s";
    possessive.then_some(i + 1)
}

/// Name parts from `i` on: words, initials, "O'Brien", "Smith-Jones". At most four parts.
fn parts(ctx: &Ctx<'_>, mut i: usize) -> (usize, usize) {
    let mut count = 0;
    while count < 4 {
        if let Some(j) = initial(ctx, i) {
            i = j;
            count += 1;
            continue;
        }
        // "O'Brien": a one-letter O joined by an apostrophe to a name
        let o_prefix = ctx.word(i) == "O"
            && ctx
                .toks
                .get(i + 1)
                .is_some_and(|t| is_apostrophe(ctx.text[t.start..].chars().next().unwrap_or(' ')))
            && ctx.joined(i + 1)
            && ctx.joined(i + 2)
            && name_part(ctx, i + 2);
        let after_first = if name_part(ctx, i) {
            Some(i + 1)
        } else if o_prefix {
            Some(i + 3)
        } else {
            None
        };
        if let Some(mut j) = after_first {
            // Smith-Jones, O'Brien-Smith
            while (ctx.is_punct(j, '-')
                || ctx.toks.get(j).is_some_and(|t| {
                    is_apostrophe(ctx.text[t.start..].chars().next().unwrap_or(' '))
                }))
                && ctx.joined(j)
                && ctx.joined(j + 1)
                && name_part(ctx, j + 1)
            {
                j += 2;
            }
            i = j;
            count += 1;
            continue;
        }
        break;
    }
    (i, count)
}

/// The name is followed by "'s disease", "sign", "syndrome": an eponym.
fn eponym_after(ctx: &Ctx<'_>, j: usize) -> bool {
    let mut k = j;
    if ctx
        .toks
        .get(k)
        .is_some_and(|t| is_apostrophe(ctx.text[t.start..].chars().next().unwrap_or(' ')))
    {
        k += 1;
        if ctx.lw(k) == "s" {
            k += 1;
        }
    }
    if ctx.is_punct(k, '-') {
        k += 1;
    }
    // "Guillain-Barré syndrome": skip one more capitalised word
    let next = ctx.lw(k);
    EPONYM_NOUNS.contains(&next)
        || (ctx.toks.get(k).is_some_and(|t| t.cap) && EPONYM_NOUNS.contains(&ctx.lw(k + 1)))
}

fn titled(ctx: &Ctx<'_>, i: usize) -> Option<(usize, usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    if !t.is_cap_word() || !TITLES.contains(ctx.lw(i)) {
        return None;
    }
    let mut k = i + 1;
    if ctx.is_punct(k, '.') && ctx.joined(k) {
        k += 1;
    }
    let (end, count) = parts(ctx, k);
    if count == 0 || eponym_after(ctx, end) {
        return None;
    }
    Some((i, end, 0.9, P_TITLED))
}

fn first_name(ctx: &Ctx<'_>, i: usize) -> Option<(usize, usize, f32, u8)> {
    let t = ctx.toks.get(i)?;
    if !t.is_cap_word() || (t.upper && t.len() > 1) {
        return None;
    }
    let w = ctx.lw(i);
    if !FIRST_NAMES.contains(w)
        || NOT_NAME.contains(w)
        || FACILITY_HEADS
            .longest_at(&ctx.lower, &ctx.toks, i)
            .is_some()
    {
        return None;
    }
    let (end, count) = parts(ctx, i + 1);
    if count > 0 {
        if eponym_after(ctx, end) {
            return None;
        }
        // the name must not be the start of a facility ("Grace Memorial Hospital" is found by
        // the facility rule, and the overlap merges into one location)
        let last = ctx.lw(end - 1);
        let strong = initial(ctx, i + 1).is_some() || SURNAMES.contains(last);
        return Some((i, end, if strong { 0.85 } else { 0.65 }, P_NAME));
    }
    // a first name alone, where the text says it is a name
    let b1 = ctx.lw_before(i, 1);
    let said = matches!(
        b1,
        "named" | "called" | "patient" | "pt" | "mrs" | "mr" | "ms" | "miss"
    ) || (b1 == ":" && matches!(ctx.lw_before(i, 2), "name" | "patient" | "pt"))
        || (b1 == "is" && ctx.lw_before(i, 2) == "name")
        || (b1 == ","
            && matches!(
                ctx.lw_before(i, 2),
                "patient"
                    | "pt"
                    | "female"
                    | "male"
                    | "woman"
                    | "man"
                    | "boy"
                    | "girl"
                    | "child"
                    | "infant"
                    | "baby"
                    | "son"
                    | "daughter"
                    | "wife"
                    | "husband"
                    | "mother"
                    | "father"
                    | "lady"
                    | "gentleman"
            ));
    if said && !eponym_after(ctx, i + 1) {
        return Some((i, i + 1, 0.7, P_NAME));
    }
    None
}
