//! Dates other than a year alone: "April 12, 2023", "Feb 21", "21st of February", "March 2023",
//! "2/21/23", "2023-02-21", and "2/21" after a word that introduces a date.

use super::Ctx;
use crate::dict::month;
use crate::types::PhiType;

const P_DATE: u8 = 7;

pub(super) fn find(ctx: &mut Ctx<'_>) {
    let mut found: Vec<(usize, usize, f32)> = Vec::new();
    let mut i = 0;
    while i < ctx.toks.len() {
        if let Some((j, conf)) = month_first(ctx, i)
            .or_else(|| day_first(ctx, i))
            .or_else(|| numeric(ctx, i))
        {
            found.push((i, j, conf));
            i = j;
        } else {
            i += 1;
        }
    }
    for (i, j, conf) in found {
        let q = if i > 0
            && matches!(ctx.lw(i - 1), "last" | "this" | "next")
            && month(ctx.lw(i)).is_some()
        {
            i - 1
        } else {
            i
        };
        ctx.push_tokens(q, j, PhiType::Date, conf, P_DATE);
    }
    weekdays(ctx);
}

/// A day of the month at token `i` ("21", "21st", "3rd"): the day.
fn day_at(ctx: &Ctx<'_>, i: usize) -> Option<u32> {
    let t = ctx.toks.get(i)?;
    if !t.is_word() || t.digits == 0 || t.digits > 2 {
        return None;
    }
    let w = ctx.lw(i);
    let n = crate::text::leading_digits(w);
    if n != usize::from(t.digits) {
        return None;
    }
    let (num, suffix) = w.split_at(n);
    if !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day: u32 = num.parse().ok()?;
    let suffix_ok = match suffix {
        "" => true,
        "st" => day % 10 == 1 && day != 11,
        "nd" => day % 10 == 2 && day != 12,
        "rd" => day % 10 == 3 && day != 13,
        "th" => true,
        _ => false,
    };
    ((1..=31).contains(&day) && suffix_ok).then_some(day)
}

/// A year at token `i` (four digits 1900..=2199, or "'23"): one past its last token.
fn year_at(ctx: &Ctx<'_>, i: usize) -> Option<usize> {
    let t = ctx.toks.get(i)?;
    if t.is_number() && t.len() == 4 {
        let y: u32 = ctx.word(i).parse().ok()?;
        return (1900..=2199).contains(&y).then_some(i + 1);
    }
    if t.kind == crate::text::Kind::Punct('\'') || t.kind == crate::text::Kind::Punct('’') {
        let n = ctx.toks.get(i + 1)?;
        return (n.is_number() && n.len() == 2 && !n.space_before).then_some(i + 2);
    }
    None
}

/// After a day: optional "," and a year.
fn with_year(ctx: &Ctx<'_>, j: usize) -> usize {
    let k = if ctx.is_punct(j, ',') { j + 1 } else { j };
    year_at(ctx, k).unwrap_or(j)
}

/// A month name at `i` (capitalised, or followed by a day): (month, one past it and its dot).
fn month_word(ctx: &Ctx<'_>, i: usize) -> Option<(u8, usize)> {
    let t = ctx.toks.get(i)?;
    if !t.is_alpha() {
        return None;
    }
    let m = month(ctx.lw(i))?;
    let mut j = i + 1;
    // "Feb." but not the full stop after "June."
    let abbreviation = !matches!(ctx.lw(i), "may" | "june" | "july");
    if ctx.is_punct(j, '.') && ctx.joined(j) && t.len() <= 4 && abbreviation {
        j += 1;
    }
    Some((m, j))
}

fn month_first(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32)> {
    let (_, j) = month_word(ctx, i)?;
    let cap = ctx.toks[i].cap;
    let word = ctx.lw(i);
    if day_at(ctx, j).is_some()
        && ctx
            .toks
            .get(j)
            .is_some_and(|t| t.space_before || ctx.is_punct(j - 1, '.'))
    {
        // "Feb 21", "April 12, 2023", "Sept 15 2022"; not "may 2 patients" (lower case "may")
        if !cap && word == "may" {
            return None;
        }
        // a range "Feb 21-23": include the second day
        let mut end = j + 1;
        if ctx.is_punct(end, '-') && day_at(ctx, end + 1).is_some() {
            end += 2;
        }
        return Some((with_year(ctx, end), 0.95));
    }
    if !cap {
        return None;
    }
    // "March 2023", "March of 2023", "March, 2023"
    let k = if ctx.is_punct(j, ',') || ctx.lw(j) == "of" {
        j + 1
    } else {
        j
    };
    if let Some(end) = year_at(ctx, k) {
        if ctx.toks[k].is_number() || k == j {
            return Some((end, 0.9));
        }
    }
    // a month alone after a word that introduces a time ("seen in March")
    let before = ctx.lw_before(i, 1);
    if matches!(before, "last" | "this" | "next" | "early" | "late" | "mid") && i > 0 {
        // "last December": the qualifier is part of the date
        return (word != "may")
            .then_some((j, 0.8))
            .filter(|_| word.len() >= 3);
    }
    let intro = matches!(
        before,
        "in" | "since"
            | "during"
            | "until"
            | "till"
            | "by"
            | "early"
            | "late"
            | "mid"
            | "last"
            | "this"
            | "next"
            | "of"
            | "from"
            | "before"
            | "after"
    );
    (word.len() >= 4 && word != "march" && word != "may" && intro).then_some((j, 0.7))
}

fn day_first(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32)> {
    day_at(ctx, i)?;
    // "17-Feb-2023", "17/Feb/23"
    for sep in ['-', '/', '.'] {
        if ctx.is_punct(i + 1, sep) && ctx.joined(i + 1) && ctx.joined(i + 2) {
            let (_, after) = month_word(ctx, i + 2)?;
            if ctx.is_punct(after, sep)
                && ctx.joined(after)
                && ctx.toks.get(after + 1).is_some_and(|t| {
                    t.is_number() && !t.space_before && (t.len() == 2 || t.len() == 4)
                })
            {
                return Some((after + 2, 0.95));
            }
            return None;
        }
    }
    let mut j = i + 1;
    if ctx.lw(j) == "of" {
        j += 1;
    }
    let (_, after) = month_word(ctx, j)?;
    if !ctx.toks[j].cap && ctx.lw(j) == "may" {
        return None;
    }
    Some((with_year(ctx, after), 0.95))
}

/// Numeric dates: "2/21/23", "02-21-2023", "2023-02-21", "21.02.2023", and "2/21" after a date
/// word.
fn numeric(ctx: &Ctx<'_>, i: usize) -> Option<(usize, f32)> {
    let t = ctx.toks.get(i)?;
    if !t.is_number() || t.len() > 4 {
        return None;
    }
    if i > 0
        && ctx.joined(i)
        && (ctx.toks[i - 1].is_word()
            || ctx.is_punct(i - 1, '/')
            || ctx.is_punct(i - 1, '-')
            || ctx.is_punct(i - 1, '.'))
    {
        return None;
    }
    let sep = match ctx.toks.get(i + 1)?.kind {
        crate::text::Kind::Punct(c @ ('/' | '-' | '.')) if ctx.joined(i + 1) => c,
        _ => return None,
    };
    let num = |k: usize| -> Option<(u32, usize)> {
        let t = ctx.toks.get(k)?;
        (t.is_number() && ctx.joined(k) && t.len() <= 4)
            .then(|| (ctx.word(k).parse().ok(), t.len()))
            .and_then(|(v, l)| v.map(|v| (v, l)))
    };
    let (a, alen) = (ctx.word(i).parse::<u32>().ok()?, t.len());
    let (b, blen) = num(i + 2)?;
    let third = if ctx.is_punct(i + 3, sep) && ctx.joined(i + 3) {
        num(i + 4)
    } else {
        None
    };
    // nothing attached after the date ("1/2/3/4" is not a date)
    let end = if third.is_some() { i + 5 } else { i + 3 };
    if let Some(n) = ctx.toks.get(end) {
        if !n.space_before
            && (n.is_word()
                || n.is_punct('/')
                || n.is_punct('-')
                || (n.is_punct('.')
                    && ctx
                        .toks
                        .get(end + 1)
                        .is_some_and(|x| x.is_number() && !x.space_before)))
        {
            return None;
        }
    }
    let md = |m: u32, d: u32| (1..=12).contains(&m) && (1..=31).contains(&d);
    match third {
        Some((c, clen)) => {
            let ok = if alen == 4 {
                (1900..=2199).contains(&a) && blen <= 2 && clen <= 2 && md(b, c)
            } else {
                alen <= 2
                    && blen <= 2
                    && (clen == 2 || (clen == 4 && (1900..=2199).contains(&c)))
                    && (md(a, b) || md(b, a))
            };
            ok.then_some((end, 0.95))
        }
        None => {
            // "2/21" only where a date is expected; never "120/80" or "7/10 pain"
            if sep != '/' || alen > 2 || blen > 2 || !md(a, b) {
                return None;
            }
            let before = ctx.lw_before(i, 1);
            let intro = matches!(
                before,
                "on" | "since"
                    | "from"
                    | "until"
                    | "till"
                    | "dated"
                    | "date"
                    | "dob"
                    | "seen"
                    | "visit"
                    | "admitted"
                    | "discharged"
                    | "born"
                    | "through"
                    | "thru"
                    | "starting"
                    | "started"
                    | "effective"
            ) || (before == ":"
                && matches!(
                    ctx.lw_before(i, 2),
                    "date" | "dob" | "dos" | "admitted" | "discharged"
                ));
            intro.then_some((end, 0.8))
        }
    }
}

/// "last Friday", "this Monday", "next Tuesday": a specific day.
fn weekdays(ctx: &mut Ctx<'_>) {
    let mut found = Vec::new();
    for i in 1..ctx.toks.len() {
        let day = matches!(
            ctx.lw(i),
            "monday" | "tuesday" | "wednesday" | "thursday" | "friday" | "saturday" | "sunday"
        );
        if day && matches!(ctx.lw(i - 1), "last" | "this" | "next" | "on" | "past") {
            found.push((if ctx.lw(i - 1) == "on" { i } else { i - 1 }, i + 1));
        }
    }
    for (i, j) in found {
        ctx.push_tokens(i, j, PhiType::Date, 0.7, P_DATE);
    }
}
