//! What a model file is on the Hugging Face Hub (repository, file, revision, SHA-256), and the
//! checks every part gets before it is used in a URL or a path.

use std::fmt;

/// One file pinned on the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// `namespace/name` (or a bare legacy name such as `gpt2`).
    pub repo: String,
    /// The path of the file inside the repository.
    pub file: String,
    /// A commit hash (40 hex digits) or a branch or tag name.
    pub revision: String,
    /// The expected SHA-256 in lowercase hex; `None` records whatever the first download hashes
    /// to (only allowed for a tokenizer).
    pub sha256: Option<String>,
}

impl fmt::Display for FileSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} at {}", self.repo, self.file, self.revision)
    }
}

/// A repository id: one or two segments of letters, digits, `-`, `_` and `.`, each starting with
/// a letter or digit, without `--` or `..`, at most 96 characters in all.
pub fn repo_id(s: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "{s:?} is not a Hugging Face repository id ({why}); expected namespace/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF"
        ))
    };
    if s.is_empty() || s.len() > 96 {
        return bad("1 to 96 characters");
    }
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 2 {
        return bad("at most one '/'");
    }
    for p in &parts {
        if p.is_empty() {
            return bad("an empty segment");
        }
        if !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("only letters, digits, '-', '_' and '.'");
        }
        if !p.starts_with(|c: char| c.is_ascii_alphanumeric()) || p.ends_with('.') {
            return bad("a segment starts with a letter or digit and does not end with '.'");
        }
        if p.contains("--") || p.contains("..") {
            return bad("no '--' or '..'");
        }
    }
    Ok(s.to_owned())
}

/// A file path inside a repository: relative, `/`-separated, no `.` or `..` segment, letters,
/// digits, `-`, `_`, `.` and `+` only, ending in `extension`.
pub fn repo_file(s: &str, extension: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "{s:?} is not a usable file name in a repository ({why})"
        ))
    };
    if s.is_empty() || s.len() > 255 {
        return bad("1 to 255 characters");
    }
    for seg in s.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("a relative path without empty, '.' or '..' segments");
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        {
            return bad("only letters, digits, '-', '_', '.', '+' and '/'");
        }
    }
    if !s.to_ascii_lowercase().ends_with(extension) {
        return bad(&format!("it must end in {extension}"));
    }
    Ok(s.to_owned())
}

/// A revision: a 40-hex-digit commit hash (recommended: it cannot move), or a branch or tag name
/// of letters, digits, `-`, `_`, `.` and `/` without `..`.
pub fn revision(s: &str) -> Result<String, String> {
    if is_commit(s) {
        return Ok(s.to_ascii_lowercase());
    }
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !s.contains("..")
        && !s.starts_with(['/', '.', '-'])
        && !s.ends_with('/');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a revision: give a commit hash (40 hex digits) or a branch or tag name"
        ))
    }
}

/// Whether `s` is a full commit hash.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A SHA-256 digest: exactly 64 hex digits, returned in lowercase.
pub fn sha256(s: &str) -> Result<String, String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is not a SHA-256 digest: expected exactly 64 hex digits (the `oid sha256:` of the file's LFS pointer)"
        ))
    }
}

/// A model id for the registry, `[llm]` and metrics labels: `[a-z0-9._-]`, 1 to 64 characters.
pub fn model_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a model id: 1 to 64 of a-z, 0-9, '.', '_' and '-'"
        ))
    }
}

/// The default id of a model: its file name without directories and the `.gguf` extension,
/// lowercased, other characters replaced by `-`.
pub fn default_id(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base
        .strip_suffix(".gguf")
        .or_else(|| base.strip_suffix(".GGUF"))
        .unwrap_or(base);
    let id: String = stem
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        "model".to_owned()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for ok in [
            "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            "gpt2",
            "HuggingFaceTB/SmolLM2-360M-Instruct",
            "a/b_c.d",
        ] {
            assert_eq!(repo_id(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "a/b/c",
            "/x",
            "x/",
            "a/../b",
            "a/b--c",
            "-a/b",
            "a/b.",
            "a b/c",
            "a/b?x=1",
            "a/b#f",
            "https://huggingface.co/a/b",
            &"a".repeat(97),
        ] {
            assert!(repo_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn repo_files() {
        assert!(repo_file("qwen2.5-0.5b-instruct-q8_0.gguf", ".gguf").is_ok());
        assert!(repo_file("sub/dir/Model-Q4_K_M.GGUF", ".gguf").is_ok());
        assert!(repo_file("tokenizer.json", ".json").is_ok());
        for bad in [
            "",
            "../x.gguf",
            "/abs.gguf",
            "a//b.gguf",
            "./a.gguf",
            "a/./b.gguf",
            "x.bin",
            "x y.gguf",
            "x%2F.gguf",
            "a\\b.gguf",
        ] {
            assert!(repo_file(bad, ".gguf").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn revisions() {
        let commit = "9217F5DB79A29953EB74D5343926648285EC7E67";
        assert_eq!(revision(commit).unwrap(), commit.to_ascii_lowercase());
        assert!(is_commit("9217f5db79a29953eb74d5343926648285ec7e67"));
        assert!(!is_commit("main"));
        for ok in ["main", "v1.0", "refs/pr/1"] {
            assert_eq!(revision(ok).unwrap(), ok);
        }
        for bad in [
            "", "..", "a/../b", "/main", "main/", "-x", "a b", "a?b", "a%2e",
        ] {
            assert!(revision(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn digests() {
        let d = "CA59CA7F13D0E15A8CFA77BD17E65D24F6844B554A7B6C12E07A5F89FF76844E";
        assert_eq!(sha256(d).unwrap(), d.to_ascii_lowercase());
        assert!(sha256(&d[1..]).is_err());
        assert!(sha256(&format!("{d}0")).is_err());
        assert!(sha256(&d.replace('C', "g")).is_err());
        assert!(sha256("").is_err());
    }

    #[test]
    fn ids() {
        assert_eq!(
            default_id("qwen2.5-0.5b-instruct-q8_0.gguf"),
            "qwen2.5-0.5b-instruct-q8_0"
        );
        assert_eq!(default_id("dir/SmolLM2 360M.GGUF"), "smollm2-360m");
        assert_eq!(default_id(&format!("{}.gguf", "a".repeat(80))).len(), 64);
        assert!(model_id("qwen2.5-0.5b").is_ok());
        assert!(model_id("Qwen").is_err());
        assert!(model_id("").is_err());
    }
}
