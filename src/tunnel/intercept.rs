//! Leaf certificates for intercepted hosts: minted on the first handshake for a host (by its
//! SNI), signed by the mounted interception CA, cached. The agent trusts the CA
//! (`warden ca bundle`, `NODE_EXTRA_CA_CERTS`), so a CONNECT to `api.openai.com` ends in Warden
//! and its requests go through the same pipeline as base-URL requests.
//!
//! Leaves are short-lived ([`LEAF_LIFETIME`], far inside the 398 days Apple and the browsers
//! accept) and minted again a day after they were made, so a leaf that leaks is good for a week
//! at most and a long-running Warden never serves an expired one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Leaves kept: one per intercepted host name an agent reaches.
const CACHED_LEAVES: usize = 1024;

/// How long a leaf is valid from the moment it is minted.
pub const LEAF_LIFETIME: i64 = 7 * 24 * 3600;
/// How far back a leaf's validity starts: a client whose clock is a little behind still
/// accepts it.
const LEAF_BACKDATE: i64 = 3600;
// Apple and the browsers refuse server certificates valid for more than 398 days.
const _: () = assert!(LEAF_LIFETIME + LEAF_BACKDATE <= 398 * 24 * 3600);
/// How old a cached leaf may be before the next handshake mints a new one.
const LEAF_RENEW_AFTER: i64 = 24 * 3600;

/// A minted leaf and when it was minted (Unix seconds).
type Leaf = (Arc<CertifiedKey>, i64);

/// The interception CA and the leaves it has signed.
pub struct Interceptor {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaves: quick_cache::sync::Cache<String, Leaf>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor").finish_non_exhaustive()
    }
}

impl Interceptor {
    /// Reads the CA certificate and key (PEM); an error says which file and why.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let cert_pem = read(cert_file)?;
        let key = KeyPair::from_pem(&read(key_file)?).map_err(|e| {
            format!(
                "{}: not a PKCS#8 PEM private key ({e}); convert one with `openssl pkcs8 -topk8 -nocrypt`",
                key_file.display()
            )
        })?;
        let ca_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| format!("{}: no PEM certificate", cert_file.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", cert_file.display()))?;
        Ok(Interceptor {
            issuer,
            ca_der,
            leaves: quick_cache::sync::Cache::new(CACHED_LEAVES),
        })
    }

    /// The leaf for `host` at `now` (Unix seconds): the cached one, or a new one when there is
    /// none or it is older than a day.
    pub fn leaf(&self, host: &str, now: i64) -> Result<Arc<CertifiedKey>, String> {
        if let Some((leaf, minted)) = self.leaves.get(host) {
            if now - minted < LEAF_RENEW_AFTER {
                return Ok(leaf);
            }
        }
        let leaf = self
            .mint(host, now)
            .map_err(|e| format!("cannot mint a certificate for {host}: {e}"))?;
        self.leaves
            .insert(host.to_owned(), (Arc::clone(&leaf), now));
        Ok(leaf)
    }

    fn mint(&self, host: &str, now: i64) -> Result<Arc<CertifiedKey>, String> {
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let at =
            |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| e.to_string());
        params.not_before = at(now - LEAF_BACKDATE)?;
        params.not_after = at(now + LEAF_LIFETIME)?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        pingora::tls::install_default_crypto_provider();
        let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider")?;
        CertifiedKey::from_der(chain, key, provider)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

/// The TLS acceptor for intercepted tunnels, from the interception CA's files; `None` when none
/// is configured (intercepted hosts are then refused, never passed through).
pub fn acceptor(ca: Option<&(PathBuf, PathBuf)>) -> Result<Option<Acceptor>, String> {
    let Some((cert, key)) = ca else {
        return Ok(None);
    };
    let interceptor = Arc::new(Interceptor::load(cert, key)?);
    let mut tls = TlsSettings::intermediate("", "").map_err(|e| e.to_string())?;
    tls.set_cert_resolver(interceptor);
    Ok(Some(tls.build()))
}

impl ResolvesServerCert for Interceptor {
    /// Intercepted clients name the host they want (SNI); one that does not gets no
    /// certificate, and the handshake fails.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name()?.to_ascii_lowercase();
        match self.leaf(&host, jiff::Timestamp::now().as_second()) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn interceptor(dir: &Path) -> Interceptor {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("ca.key"), key.serialize_pem()).unwrap();
        Interceptor::load(&dir.join("ca.pem"), &dir.join("ca.key")).unwrap()
    }

    fn validity(leaf: &CertifiedKey) -> (i64, i64) {
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.cert[0]).unwrap();
        let validity = cert.validity();
        (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    }

    #[test]
    fn leaves_are_short_lived_and_renewed_after_a_day() {
        let dir = std::env::temp_dir().join(format!("warden-intercept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let interceptor = interceptor(&dir);
        let first = interceptor.leaf("api.openai.com", NOW).unwrap();
        assert_eq!(validity(&first), (NOW - LEAF_BACKDATE, NOW + LEAF_LIFETIME));
        let cached = interceptor.leaf("api.openai.com", NOW + 3600).unwrap();
        assert!(Arc::ptr_eq(&first, &cached), "cached within the day");
        let renewed = interceptor
            .leaf("api.openai.com", NOW + LEAF_RENEW_AFTER)
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed));
        assert_eq!(validity(&renewed).1, NOW + LEAF_RENEW_AFTER + LEAF_LIFETIME);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
