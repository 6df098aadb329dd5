//! Date surrogates: every date of a conversation moves by the same number of days, so intervals
//! stay true, and is written back in the form it came in ("Feb 21" stays "Mon D", "2/21/23"
//! stays "M/D/YY", "21st of February" keeps its ordinal).

use crate::dict::month;
use crate::text::{tokenize, Kind};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    (next - days_from_civil(y, m, 1)) as u32
}

/// The role of one token of a date.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Month,
    Day,
    Year,
    Weekday,
}

fn ordinal(day: u32) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// Applies the case of `like` to `s` (all upper, all lower, or as written).
fn case_like(s: &str, like: &str) -> String {
    if like.chars().any(char::is_alphabetic)
        && !like.chars().any(char::is_lowercase)
        && like.chars().count() > 1
    {
        s.to_uppercase()
    } else if !like.chars().any(char::is_uppercase) {
        s.to_lowercase()
    } else {
        s.to_string()
    }
}

/// `text` (a date the detector found) moved by `shift` days, in the same form; `None` when the
/// text is not a form this module can read.
pub(crate) fn shift_date(text: &str, shift: i64) -> Option<String> {
    let toks = tokenize(text);
    let lower = text.to_lowercase();
    if lower.len() != text.len() {
        return None;
    }
    let mut roles: Vec<(usize, Part)> = Vec::new();
    let (mut y, mut m, mut d): (Option<i64>, Option<u32>, Option<u32>) = (None, None, None);
    let words: Vec<usize> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == Kind::Word)
        .map(|(i, _)| i)
        .collect();
    let numeric = words.iter().all(|&i| toks[i].alpha == 0);
    if numeric {
        let nums: Vec<(usize, i64, usize)> = words
            .iter()
            .map(|&i| {
                Some((
                    i,
                    text[toks[i].start..toks[i].end].parse::<i64>().ok()?,
                    toks[i].len(),
                ))
            })
            .collect::<Option<_>>()?;
        match nums.as_slice() {
            [(yi, yv, 4), (mi, mv, _), (di, dv, _)] => {
                roles.extend([(*yi, Part::Year), (*mi, Part::Month), (*di, Part::Day)]);
                (y, m, d) = (Some(*yv), Some(*mv as u32), Some(*dv as u32));
            }
            [(ai, av, _), (bi, bv, _), rest @ ..] => {
                let (mi, mv, di, dv) = if (1..=12).contains(av) {
                    (*ai, *av, *bi, *bv)
                } else {
                    (*bi, *bv, *ai, *av)
                };
                roles.extend([(mi, Part::Month), (di, Part::Day)]);
                (m, d) = (Some(mv as u32), Some(dv as u32));
                if let [(yi, yv, len)] = rest {
                    roles.push((*yi, Part::Year));
                    y = Some(if *len == 2 { 2000 + yv } else { *yv });
                }
            }
            _ => return None,
        }
    } else {
        for &i in &words {
            let t = &toks[i];
            let w = &lower[t.start..t.end];
            if let Some(mm) = month(w) {
                roles.push((i, Part::Month));
                m = Some(u32::from(mm));
            } else if WEEKDAYS.contains(&w) {
                roles.push((i, Part::Weekday));
            } else if t.digits > 0
                && t.digits <= 2
                && crate::text::leading_digits(w) == usize::from(t.digits)
            {
                let digits = &w[..crate::text::leading_digits(w)];
                roles.push((i, Part::Day));
                d = digits.parse().ok();
            } else if t.is_number() && t.len() == 4 {
                roles.push((i, Part::Year));
                y = w.parse().ok();
            } else if t.is_number()
                && t.len() == 2
                && i > 0
                && matches!(toks[i - 1].kind, Kind::Punct('\'' | '’'))
            {
                roles.push((i, Part::Year));
                y = w.parse::<i64>().ok().map(|v| 2000 + v);
            } else if !matches!(
                w,
                "of" | "the" | "last" | "this" | "next" | "on" | "past" | "st" | "nd" | "rd" | "th"
            ) {
                return None;
            }
        }
    }
    if roles.is_empty() {
        return None;
    }
    let had_year = y.is_some();
    let base_year = y.unwrap_or(if m == Some(2) && d == Some(29) {
        2000
    } else {
        2001
    });
    let (ny, nm, nd, weekday_shift) = match (m, d) {
        (Some(m), Some(d)) => {
            if !(1..=12).contains(&m) || d == 0 || d > days_in_month(base_year, m) {
                return None;
            }
            let (ny, nm, nd) = civil_from_days(days_from_civil(base_year, m, d) + shift);
            (ny, nm, nd, shift)
        }
        (Some(m), None) => {
            if !(1..=12).contains(&m) {
                return None;
            }
            let (ny, nm, _) = civil_from_days(days_from_civil(base_year, m, 15) + shift);
            (ny, nm, 15, shift)
        }
        (None, _) => (base_year, 1, 1, shift),
    };
    // "03/05/2022" pads months and days to two digits, "3/5/2022" does not
    let zero_padded = roles.iter().any(|(k, r)| {
        matches!(r, Part::Month | Part::Day)
            && toks[*k].digits > 0
            && text[toks[*k].start..].starts_with('0')
    });
    let mut out = String::with_capacity(text.len() + 4);
    let mut last = 0;
    for (i, t) in toks.iter().enumerate() {
        let Some((_, role)) = roles.iter().find(|(k, _)| *k == i) else {
            continue;
        };
        let orig = &text[t.start..t.end];
        out.push_str(&text[last..t.start]);
        let replacement = match role {
            Part::Month if numeric => pad(nm, zero_padded),
            Part::Month => {
                let full = MONTHS[(nm - 1) as usize];
                let w = &lower[t.start..t.end];
                let name = if MONTHS.iter().any(|f| f.eq_ignore_ascii_case(w)) {
                    full.to_string()
                } else if w == "sept" && nm == 9 {
                    "Sept".to_string()
                } else {
                    full[..3].to_string()
                };
                case_like(&name, orig)
            }
            Part::Day => {
                let suffix = &orig[crate::text::leading_digits(orig)..];
                let day = pad(nd, zero_padded);
                if suffix.is_empty() {
                    day
                } else {
                    format!("{day}{}", case_like(ordinal(nd), suffix))
                }
            }
            Part::Year => {
                if !had_year {
                    orig.to_string()
                } else if orig.len() == 2 {
                    format!("{:02}", ny.rem_euclid(100))
                } else {
                    format!("{ny:04}")
                }
            }
            Part::Weekday => {
                let w = &lower[t.start..t.end];
                let k = WEEKDAYS.iter().position(|x| *x == w).unwrap_or(0) as i64;
                let name = WEEKDAYS[(k + weekday_shift).rem_euclid(7) as usize];
                let mut c = name.chars();
                let title: String = c
                    .next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default();
                case_like(&title, orig)
            }
        };
        out.push_str(&replacement);
        last = t.end;
    }
    out.push_str(&text[last..]);
    Some(out)
}

fn pad(v: u32, zero_padded: bool) -> String {
    if zero_padded {
        format!("{v:02}")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_day_arithmetic_round_trips() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
    }

    #[test]
    fn dates_keep_their_form_and_move_together() {
        assert_eq!(
            shift_date("April 12, 2023", 10).as_deref(),
            Some("April 22, 2023")
        );
        assert_eq!(shift_date("Feb 21", 10).as_deref(), Some("Mar 3"));
        assert_eq!(
            shift_date("21st of February", 1).as_deref(),
            Some("22nd of February")
        );
        assert_eq!(
            shift_date("November 22nd, 2022", 40).as_deref(),
            Some("January 1st, 2023")
        );
        assert_eq!(shift_date("2/21/23", 10).as_deref(), Some("3/3/23"));
        assert_eq!(shift_date("03/15/2022", -15).as_deref(), Some("02/28/2022"));
        assert_eq!(shift_date("2023-02-21", 365).as_deref(), Some("2024-02-21"));
        assert_eq!(shift_date("17-Feb-2023", 1).as_deref(), Some("18-Feb-2023"));
        assert_eq!(
            shift_date("Sept 15 2022", 0).as_deref(),
            Some("Sept 15 2022")
        );
        assert_eq!(shift_date("MARCH 2023", 31).as_deref(), Some("APRIL 2023"));
        assert_eq!(shift_date("last Friday", 2).as_deref(), Some("last Sunday"));
        assert_eq!(shift_date("2/30/2023", 1), None);
        assert_eq!(shift_date("whenever", 1), None);
    }
}
