//! Email addresses, web addresses, IP addresses and telephone/fax numbers: validated patterns
//! scanned byte by byte, each start bounded in how far it may look ahead.

use super::Ctx;
use crate::types::PhiType;

const P_CONTACT: u8 = 9;
const P_PHONE: u8 = 8;

pub(super) fn find(ctx: &mut Ctx<'_>) {
    emails(ctx);
    urls(ctx);
    ips(ctx);
    phones(ctx);
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

fn emails(ctx: &mut Ctx<'_>) {
    let bytes = ctx.text.as_bytes();
    let mut found = Vec::new();
    for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'@') {
        let mut s = at;
        while s > 0 && is_local(bytes[s - 1]) {
            s -= 1;
        }
        while s < at && matches!(bytes[s], b'.' | b'-' | b'+') {
            s += 1;
        }
        let mut e = at + 1;
        while e < bytes.len() && is_domain(bytes[e]) {
            e += 1;
        }
        while e > at + 1 && matches!(bytes[e - 1], b'.' | b'-') {
            e -= 1;
        }
        let domain = &ctx.text[at + 1..e];
        let tld_ok = domain.rsplit_once('.').is_some_and(|(host, tld)| {
            !host.is_empty() && tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
        });
        if s < at && tld_ok {
            found.push((s, e));
        }
    }
    for (s, e) in found {
        ctx.push(s, e, PhiType::EmailAddress, 0.99, P_CONTACT);
    }
}

const TLDS: &[&str] = &[
    "com", "org", "net", "edu", "gov", "io", "us", "health", "info", "biz", "co", "uk", "ca",
    "med", "care", "clinic", "hospital", "de", "fr", "au", "in", "me", "app",
];

fn urls(ctx: &mut Ctx<'_>) {
    let lower = ctx.lower.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lower.len() {
        let rest = &lower[i..];
        let boundary = i == 0 || !lower[i - 1].is_ascii_alphanumeric();
        let prefix = if !boundary {
            0
        } else if rest.starts_with(b"https://") {
            8
        } else if rest.starts_with(b"http://") {
            7
        } else if rest.starts_with(b"ftp://") {
            6
        } else if rest.starts_with(b"www.") {
            4
        } else {
            0
        };
        if prefix == 0 {
            i += 1;
            continue;
        }
        let mut e = i + prefix;
        while e < lower.len()
            && !lower[e].is_ascii_whitespace()
            && !matches!(lower[e], b'<' | b'>' | b'"' | b'`')
            && lower[e] < 0x80
        {
            e += 1;
        }
        while e > i + prefix
            && matches!(
                lower[e - 1],
                b'.' | b',' | b';' | b':' | b'!' | b'?' | b')' | b']' | b'\''
            )
        {
            e -= 1;
        }
        if e > i + prefix + 2 {
            found.push((i, e));
        }
        i = e.max(i + 1);
    }
    // Bare domains: word(.word)+ ending in a known top-level domain, optionally with a path.
    let toks = &ctx.toks;
    let mut t = 0;
    while t + 2 < toks.len() {
        if toks[t].is_word() && toks[t + 1].is_punct('.') && !toks[t + 1].space_before {
            let mut j = t;
            while j + 2 < toks.len()
                && toks[j + 1].is_punct('.')
                && !toks[j + 1].space_before
                && toks[j + 2].is_word()
                && !toks[j + 2].space_before
            {
                j += 2;
            }
            if j > t && TLDS.contains(&&ctx.lower[toks[j].start..toks[j].end]) && toks[t].alpha > 0
            {
                let mut end = toks[j].end;
                // an optional path: everything attached after a slash
                let mut k = j + 1;
                if toks
                    .get(k)
                    .is_some_and(|x| x.is_punct('/') && !x.space_before)
                {
                    while toks.get(k).is_some_and(|x| !x.space_before) {
                        k += 1;
                    }
                    // not the sentence's punctuation after it
                    while k > j + 1
                        && matches!(
                            toks[k - 1].kind,
                            crate::text::Kind::Punct(
                                '.' | ',' | ';' | ':' | '!' | '?' | ')' | ']' | '\''
                            )
                        )
                    {
                        k -= 1;
                    }
                    end = toks[k - 1].end;
                }
                found.push((toks[t].start, end));
            }
            t = j + 1;
        } else {
            t += 1;
        }
    }
    for (s, e) in found {
        ctx.push(s, e, PhiType::Url, 0.95, P_CONTACT - 1);
    }
}

/// Non-space runs: the candidates for IP addresses.
fn ips(ctx: &mut Ctx<'_>) {
    let mut found = Vec::new();
    for (start, run) in runs(ctx.text) {
        let run_trimmed = run.trim_end_matches(['.', ',', ';', ')', ']', '?', '!']);
        let run_trimmed = run_trimmed.trim_start_matches(['(', '[']);
        let offset = start + (run.len() - run.trim_start_matches(['(', '[']).len());
        let candidate = run_trimmed
            .split_once('/')
            .map_or(run_trimmed, |(ip, _)| ip);
        let v4 = candidate.bytes().filter(|b| *b == b'.').count() == 3
            && candidate.parse::<std::net::Ipv4Addr>().is_ok();
        let v6 = candidate.bytes().filter(|b| *b == b':').count() >= 2
            && candidate.parse::<std::net::Ipv6Addr>().is_ok();
        if v4 || v6 {
            found.push((offset, offset + candidate.len()));
        }
    }
    for (s, e) in found {
        ctx.push(s, e, PhiType::IpAddress, 0.97, P_CONTACT);
    }
}

/// White-space separated runs with their byte offsets (at most 64 bytes: a longer run is no
/// address).
fn runs(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                if i - s <= 64 {
                    out.push((s, &text[s..i]));
                }
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

fn digits(b: &[u8], i: usize, n: usize) -> bool {
    b.len() >= i + n && b[i..i + n].iter().all(u8::is_ascii_digit)
}

/// A North American or international telephone number starting at byte `i`: the end offset.
pub(super) fn phone_at(b: &[u8], i: usize) -> Option<usize> {
    let mut p = i;
    let mut international = false;
    if b.get(p) == Some(&b'+') {
        international = true;
        p += 1;
        let cc_start = p;
        while p < b.len() && b[p].is_ascii_digit() && p - cc_start < 3 {
            p += 1;
        }
        if p == cc_start {
            return None;
        }
        if matches!(b.get(p), Some(b' ' | b'-' | b'.')) {
            p += 1;
        }
    } else if b.get(p) == Some(&b'1')
        && matches!(b.get(p + 1), Some(b'-' | b' ' | b'.'))
        && (digits(b, p + 2, 3) || b.get(p + 2) == Some(&b'('))
    {
        p += 2;
    }
    if international && !(digits(b, p, 3) || b.get(p) == Some(&b'(')) {
        // +44 20 7946 0958: digit groups with single separators, 7 to 15 digits in all.
        let mut count = 0;
        let mut q = p;
        let mut end = p;
        while q < b.len() && q - p < 24 {
            if b[q].is_ascii_digit() {
                count += 1;
                q += 1;
                end = q;
            } else if matches!(b[q], b' ' | b'-' | b'.')
                && b.get(q + 1).is_some_and(u8::is_ascii_digit)
            {
                q += 1;
            } else {
                break;
            }
        }
        return ((6..=15).contains(&count) && boundary_after(b, end)).then_some(end);
    }
    // area code
    let sep;
    if b.get(p) == Some(&b'(') {
        if !digits(b, p + 1, 3) || b.get(p + 4) != Some(&b')') {
            return None;
        }
        p += 5;
        if b.get(p) == Some(&b' ') {
            p += 1;
        }
        sep = None;
    } else {
        if !digits(b, p, 3) {
            return None;
        }
        p += 3;
        let s = *b.get(p)?;
        if !matches!(s, b'-' | b'.' | b' ') {
            return None;
        }
        sep = Some(s);
        p += 1;
    }
    if !digits(b, p, 3) {
        return None;
    }
    p += 3;
    let s2 = *b.get(p)?;
    if !matches!(s2, b'-' | b'.' | b' ') || sep.is_some_and(|s| s != s2 && s != b' ') {
        return None;
    }
    p += 1;
    if !digits(b, p, 4) {
        return None;
    }
    p += 4;
    if !boundary_after(b, p) {
        return None;
    }
    // extension
    let rest = &b[p..b.len().min(p + 16)];
    for marker in [
        &b" ext. "[..],
        b" ext ",
        b" ext.",
        b" x",
        b" extension ",
        b" Ext. ",
        b" Ext ",
        b" X",
    ] {
        if rest.starts_with(marker) {
            let mut q = p + marker.len();
            let d = q;
            while q < b.len() && b[q].is_ascii_digit() && q - d < 6 {
                q += 1;
            }
            if q > d && boundary_after(b, q) {
                return Some(q);
            }
        }
    }
    Some(p)
}

/// Nothing number-like continues at `p`.
fn boundary_after(b: &[u8], p: usize) -> bool {
    match b.get(p) {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() => false,
        Some(b'-' | b'/' | b'.') => !b.get(p + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

fn phones(ctx: &mut Ctx<'_>) {
    let b = ctx.text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = (c.is_ascii_digit() || c == b'(' || c == b'+')
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric()
                    || matches!(b[i - 1], b'-' | b'/' | b'.' | b'+')));
        if starts {
            if let Some(end) = phone_at(b, i) {
                found.push((i, end));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    for (s, e) in found {
        let fax = is_fax_context(&ctx.lower, s);
        let t = if fax {
            PhiType::FaxNumber
        } else {
            PhiType::PhoneNumber
        };
        ctx.push(s, e, t, 0.9, P_PHONE);
    }
}

/// "fax" within the few words before `start`.
pub(super) fn is_fax_context(lower: &str, start: usize) -> bool {
    let mut from = start.saturating_sub(24);
    while !lower.is_char_boundary(from) {
        from -= 1;
    }
    let window = &lower[from..start];
    let after_phone = window.rfind("phone").or_else(|| window.rfind("tel"));
    match (window.rfind("fax"), after_phone) {
        (Some(f), Some(p)) => f > p,
        (Some(_), None) => true,
        _ => false,
    }
}
