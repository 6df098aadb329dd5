//! TLS to Redis (`rediss://`): the CA bundle named by `redis_ca_file`, and the rustls crypto
//! provider that the redis crate builds its TLS settings from.
//!
//! medai's rustls has one provider compiled in, `ring`. The redis crate asks rustls for the
//! process-default provider, so [`install_crypto_provider`] makes ring that default once, at
//! start, and refuses to go on if something else got there first. Nothing here may ever turn
//! certificate verification off.

use crate::StoreError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use std::path::Path;

/// The CA certificates a Redis server's certificate must chain to. When given, they replace the
/// public (Mozilla) roots built into medai for the Redis connection only.
#[derive(Clone)]
pub struct RedisCa {
    pem: Vec<u8>,
}

impl std::fmt::Debug for RedisCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisCa({} bytes of PEM)", self.pem.len())
    }
}

impl RedisCa {
    /// Reads a PEM bundle and checks that it holds at least one X.509 certificate and nothing
    /// that fails to parse; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let problem = |problem: String| StoreError::RedisCaFile {
            path: path.to_owned(),
            problem,
        };
        let pem = std::fs::read(path).map_err(|e| problem(format!("cannot be read: {e}")))?;
        let mut anchors = rustls::RootCertStore::empty();
        for (i, cert) in rustls_pemfile::certs(&mut pem.as_slice()).enumerate() {
            let cert: CertificateDer<'static> =
                cert.map_err(|e| problem(format!("is not valid PEM: {e}")))?;
            anchors.add(cert).map_err(|e| {
                problem(format!(
                    "certificate {} is not a usable X.509 CA certificate: {e}",
                    i + 1
                ))
            })?;
        }
        if anchors.is_empty() {
            return Err(problem(
                "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Ok(Self { pem })
    }

    /// The bundle as read, for the redis client.
    pub(crate) fn pem(&self) -> &[u8] {
        &self.pem
    }
}

/// Makes rustls's ring provider the process default, which the redis crate's TLS uses.
///
/// Call it once at start (the binary does, before anything else); calling it again is harmless.
/// Fails, rather than carrying on with an unknown provider, when a different provider is already
/// the process default.
pub fn install_crypto_provider() -> Result<(), StoreError> {
    if CryptoProvider::get_default().is_none() {
        // An error here means another thread installed a provider between the check and now;
        // which one it installed is checked below, so nothing is ignored.
        let _lost_race = rustls::crypto::ring::default_provider().install_default();
    }
    match CryptoProvider::get_default() {
        Some(p) if is_ring(p) => Ok(()),
        Some(_) => Err(StoreError::CryptoProvider(
            "another rustls crypto provider was installed as the process default before medai's \
             (ring); medai uses ring only"
                .into(),
        )),
        None => Err(StoreError::CryptoProvider(
            "no rustls crypto provider could be installed".into(),
        )),
    }
}

/// Whether `p` offers exactly ring's default cipher suites and key exchange groups. rustls gives
/// providers no identity, so this compares what they offer; aws-lc-rs, the other built-in one,
/// differs (it offers post-quantum key exchange first).
fn is_ring(p: &CryptoProvider) -> bool {
    let ring = rustls::crypto::ring::default_provider();
    let suites = |p: &CryptoProvider| {
        p.cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect::<Vec<_>>()
    };
    let groups = |p: &CryptoProvider| p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>();
    suites(p) == suites(&ring) && groups(p) == groups(&ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn installing_the_provider_twice_is_fine() {
        install_crypto_provider().unwrap();
        install_crypto_provider().unwrap();
        assert!(is_ring(CryptoProvider::get_default().unwrap()));
    }

    #[test]
    fn no_second_crypto_provider_is_compiled_in() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .unwrap();
        assert!(
            !lock.contains("name = \"aws-lc-rs\"") && !lock.contains("name = \"aws-lc-sys\""),
            "aws-lc-rs is in Cargo.lock: a dependency enabled rustls's second provider; medai \
             uses ring only (see `install_crypto_provider`)"
        );
    }

    #[test]
    fn a_bad_ca_file_is_named_with_its_problem() {
        let missing = Path::new("/nonexistent/redis-ca.pem");
        let e = RedisCa::load(missing).unwrap_err().to_string();
        assert!(
            e.contains("redis_ca_file") && e.contains("/nonexistent/redis-ca.pem"),
            "{e}"
        );
        assert!(e.contains("cannot be read"), "{e}");

        let not_pem = file(b"this is not a certificate\n");
        let e = RedisCa::load(not_pem.path()).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");

        let broken = file(
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        );
        let e = RedisCa::load(broken.path()).unwrap_err().to_string();
        assert!(e.contains("not a usable X.509"), "{e}");

        let truncated = file(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n");
        let e = RedisCa::load(truncated.path()).unwrap_err().to_string();
        assert!(e.contains("is not valid PEM"), "{e}");
    }

    #[test]
    fn a_ca_certificate_loads() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let f = file(ca.pem().as_bytes());
        let loaded = RedisCa::load(f.path()).unwrap();
        assert_eq!(loaded.pem(), ca.pem().as_bytes());
    }
}
