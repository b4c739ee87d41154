//! TLS for the MQTT listeners, and the client certificate's USP Endpoint ID.
//!
//! rumqttd's own TLS only exposes the subject's O= field; we terminate TLS ourselves so the
//! connection can be bound to the SAN URI `urn:bbf:usp:id:<EID>` of a verified certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::error::{Error, Result};

/// The URI prefix TR-369 uses for Endpoint IDs in certificates.
pub const EID_URI_PREFIX: &str = "urn:bbf:usp:id:";

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// Builds the acceptor shared by both TLS listeners.
pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&cfg.cert_file)?;
    let key_pem = read(&cfg.key_file)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::Tls(format!("{}: {e}", cfg.key_file.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key", cfg.key_file.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if cfg.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| Error::Tls(e.to_string()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The Endpoint ID named by a certificate's SAN URI `urn:bbf:usp:id:<EID>` (the first one).
pub(crate) fn endpoint_id_of(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => {
            u.strip_prefix(EID_URI_PREFIX).map(str::to_owned)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_id_from_san_uri() {
        let mut p = rcgen::CertificateParams::new(vec!["cpe.example".to_string()]).unwrap();
        p.subject_alt_names.push(rcgen::SanType::URI(
            "urn:bbf:usp:id:os::00256D-7".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(endpoint_id_of(cert.der()).as_deref(), Some("os::00256D-7"));
        assert_eq!(endpoint_id_of(b"not a certificate"), None);
    }
}
