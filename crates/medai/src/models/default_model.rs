//! The model `medai serve` answers with when no `[llm]` is configured: Qwen2.5-0.5B-Instruct,
//! quantised to Q8_0 (GGUF), with its own tokenizer. Small enough for a laptop CPU, and the
//! smallest instruct model of a family the embedded engine supports.
//!
//! Provenance of the pins (this machine cannot reach the Hub, so they were taken from public
//! records and cross-checked, not computed here):
//! - weights revision `9217f5db…` is the commit of `Qwen/Qwen2.5-0.5B-Instruct-GGUF` that several
//!   independent projects pin and whose Hub cache snapshot directory carries that name;
//! - weights SHA-256 `ca59ca7f…` and size 675 710 816 bytes appear identically in several
//!   independent manifests and download scripts for `qwen2.5-0.5b-instruct-q8_0.gguf`;
//! - tokenizer revision `7ae55760…` is the commit of `Qwen/Qwen2.5-0.5B-Instruct` pinned by
//!   several projects, and its `tokenizer.json` (7 031 645 bytes, SHA-256 `c0382117…`) is the
//!   Qwen2.5 tokenizer recorded identically in several independent file manifests.
//!
//! Whatever the source, a file whose SHA-256 differs is discarded and never loads.

use super::spec::FileSpec;

/// A model pinned in the code.
#[derive(Debug, Clone, Copy)]
pub struct PinnedModel {
    /// Registry id.
    pub id: &'static str,
    /// Weights repository.
    pub repo: &'static str,
    /// Weights file.
    pub file: &'static str,
    /// Weights commit.
    pub revision: &'static str,
    /// Weights SHA-256.
    pub sha256: &'static str,
    /// Weights size in bytes.
    pub size: u64,
    /// Tokenizer repository.
    pub tokenizer_repo: &'static str,
    /// Tokenizer file.
    pub tokenizer_file: &'static str,
    /// Tokenizer commit.
    pub tokenizer_revision: &'static str,
    /// Tokenizer SHA-256.
    pub tokenizer_sha256: &'static str,
    /// Tokenizer size in bytes.
    pub tokenizer_size: u64,
}

/// The default model.
pub const DEFAULT_MODEL: PinnedModel = PinnedModel {
    id: "qwen2.5-0.5b-instruct-q8_0",
    repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
    file: "qwen2.5-0.5b-instruct-q8_0.gguf",
    revision: "9217f5db79a29953eb74d5343926648285ec7e67",
    sha256: "ca59ca7f13d0e15a8cfa77bd17e65d24f6844b554a7b6c12e07a5f89ff76844e",
    size: 675_710_816,
    tokenizer_repo: "Qwen/Qwen2.5-0.5B-Instruct",
    tokenizer_file: "tokenizer.json",
    tokenizer_revision: "7ae557604adf67be50417f59c2c2f167def9a775",
    tokenizer_sha256: "c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539",
    tokenizer_size: 7_031_645,
};

impl PinnedModel {
    /// The weights as a pull request part.
    pub fn weights(&self) -> FileSpec {
        FileSpec {
            repo: self.repo.to_owned(),
            file: self.file.to_owned(),
            revision: self.revision.to_owned(),
            sha256: Some(self.sha256.to_owned()),
        }
    }

    /// The tokenizer as a pull request part.
    pub fn tokenizer(&self) -> FileSpec {
        FileSpec {
            repo: self.tokenizer_repo.to_owned(),
            file: self.tokenizer_file.to_owned(),
            revision: self.tokenizer_revision.to_owned(),
            sha256: Some(self.tokenizer_sha256.to_owned()),
        }
    }

    /// The exact command that pulls this model.
    pub fn pull_command(&self) -> String {
        format!(
            "medai model pull {} {} --revision {} --sha256 {} --tokenizer-repo {} --tokenizer-file {} --tokenizer-revision {} --tokenizer-sha256 {}",
            self.repo,
            self.file,
            self.revision,
            self.sha256,
            self.tokenizer_repo,
            self.tokenizer_file,
            self.tokenizer_revision,
            self.tokenizer_sha256
        )
    }

    /// Download size of both files, for messages ("676 MB").
    pub fn download_size(&self) -> String {
        format!(
            "{} MB",
            (self.size + self.tokenizer_size + 500_000) / 1_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec;
    use super::*;

    #[test]
    fn pins_are_well_formed() {
        let m = DEFAULT_MODEL;
        assert_eq!(spec::repo_id(m.repo).unwrap(), m.repo);
        assert_eq!(spec::repo_id(m.tokenizer_repo).unwrap(), m.tokenizer_repo);
        assert!(spec::is_commit(m.revision) && spec::is_commit(m.tokenizer_revision));
        assert_eq!(spec::sha256(m.sha256).unwrap(), m.sha256);
        assert_eq!(
            spec::sha256(m.tokenizer_sha256).unwrap(),
            m.tokenizer_sha256
        );
        assert!(spec::repo_file(m.file, ".gguf").is_ok());
        assert_eq!(spec::default_id(m.file), m.id);
        assert_eq!(m.download_size(), "683 MB");
        let cmd = m.pull_command();
        for part in [m.repo, m.file, m.revision, m.sha256, m.tokenizer_sha256] {
            assert!(cmd.contains(part), "{cmd}");
        }
    }
}
