//! TLS listeners: a client certificate's SAN URI binds the connection's Endpoint ID.

#[path = "support/helpers.rs"]
mod support;

use std::sync::Arc;

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rumqttd::protocol::{Connect, ConnectProperties, Packet, Protocol};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uspwatch_broker::{ListenerKind, TlsConfig};

struct Pki {
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Pki {
            ca_der: cert.der().clone(),
            ca_params: p,
            ca_key: key,
        }
    }

    /// A leaf certificate and its key, signed by this CA.
    fn leaf(&self, dns: &str, eid: Option<&str>) -> (CertificateDer<'static>, KeyPair) {
        let mut p = CertificateParams::new(vec![dns.to_string()]).unwrap();
        if let Some(eid) = eid {
            p.subject_alt_names.push(SanType::URI(
                format!("urn:bbf:usp:id:{eid}").try_into().unwrap(),
            ));
        }
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.der().clone(), key)
    }
}

fn pem(tag: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {tag}-----\n{}\n-----END {tag}-----\n",
        lines.join("\n")
    )
}

/// Connects over TLS (optionally with a client certificate), sends an MQTT 5 CONNECT and
/// returns the CONNACK reason code, or `None` if the broker closed the connection.
async fn connect(
    port: u16,
    ca: &CertificateDer<'static>,
    client: Option<(CertificateDer<'static>, &KeyPair)>,
    client_id: &str,
) -> Option<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            b.with_client_auth_cert(vec![cert], key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .ok()?;
    let mut buf = BytesMut::new();
    let props = ConnectProperties {
        session_expiry_interval: None,
        receive_maximum: None,
        max_packet_size: None,
        topic_alias_max: None,
        request_response_info: None,
        request_problem_info: None,
        user_properties: vec![],
        authentication_method: None,
        authentication_data: None,
    };
    let c = Connect {
        keep_alive: 30,
        client_id: client_id.into(),
        clean_session: true,
    };
    rumqttd::protocol::v5::V5
        .write(Packet::Connect(c, Some(props), None, None, None), &mut buf)
        .unwrap();
    s.write_all(&buf).await.ok()?;
    let mut head = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .unwrap()
        .ok()?;
    assert_eq!(head[0], 0x20, "CONNACK");
    Some(head[3])
}

#[tokio::test]
async fn client_certificate_binds_the_endpoint_id() {
    let pki = Pki::new();
    let (server_cert, server_key) = pki.leaf("localhost", None);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("server.pem"), pem("CERTIFICATE", &server_cert)).unwrap();
    std::fs::write(
        p("server.key"),
        pem("PRIVATE KEY", &server_key.serialize_der()),
    )
    .unwrap();
    std::fs::write(p("ca.pem"), pem("CERTIFICATE", &pki.ca_der)).unwrap();
    let (b, _t) = broker(|c| {
        c.allow_anonymous = false;
        c.listeners.tls_v5 = local();
        c.tls = Some(TlsConfig {
            cert_file: p("server.pem"),
            key_file: p("server.key"),
            client_ca_file: Some(p("ca.pem")),
            require_client_cert: false,
        });
    })
    .await;
    let port = addr(&b, ListenerKind::TlsV5).port();
    let mut presence = b.presence();

    let eid = "os::00256D-T1";
    let (cert, key) = pki.leaf("cpe", Some(eid));
    assert_eq!(
        connect(port, &pki.ca_der, Some((cert.clone(), &key)), "cpe-t1").await,
        Some(0)
    );
    let ev = presence.recv().await.unwrap();
    assert_eq!(ev.endpoint_id, eid);
    assert_eq!(b.stats().connections_tls, 1);

    // The client id claims another Endpoint ID than the certificate names.
    assert_eq!(
        connect(port, &pki.ca_der, Some((cert, &key)), "os::00256D-T2").await,
        Some(0x87)
    );
    // No certificate, no password, anonymous off.
    assert_eq!(
        connect(port, &pki.ca_der, None, "os::00256D-T1").await,
        Some(0x87)
    );
    // A certificate from another CA fails the handshake.
    let other = Pki::new();
    let (cert, key) = other.leaf("cpe", Some(eid));
    assert_eq!(
        connect(port, &pki.ca_der, Some((cert, &key)), "cpe").await,
        None
    );
}
