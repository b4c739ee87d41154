//! The CONNECT phase: read the packet, authenticate, bind the Endpoint ID, register with the
//! router, answer with our CONNACK.

use std::time::Duration;

use bytes::BytesMut;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, ConnectReturnCode, LastWill, LastWillProperties, Packet,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;
use uspwatch_proto::mqtt::{USER_PROPERTY_ENDPOINT_ID, USER_PROPERTY_SUBSCRIBE_TOPIC};

use crate::acl::Identity;
use crate::auth::{self, Offer, Refusal};
use crate::codec::{Codec, ReadError};
use crate::metrics;
use crate::session::assign_client_id;
use crate::state::{Counters, LOCAL_PREFIX, Shared};

/// Largest CONNECT read (client id, credentials and will together).
const MAX_CONNECT_SIZE: usize = 64 * 1024;

/// A registered connection, ready for the packet loop.
pub(super) struct Established {
    pub client_id: String,
    pub identity: Identity,
    pub link_tx: LinkTx,
    pub link_rx: LinkRx,
    pub keep_alive: Duration,
    pub will: Option<(LastWill, Option<LastWillProperties>)>,
}

/// Why the CONNECT phase ended without a connection (already answered on the wire).
pub(super) struct Failed {
    pub reason: &'static str,
}

fn fail(reason: &'static str) -> Failed {
    Failed { reason }
}

pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    socket: &mut S,
    codec: &mut Codec,
    rbuf: &mut BytesMut,
    cert_eid: Option<&str>,
    conn_no: u64,
    remote: std::net::SocketAddr,
) -> Result<Established, Failed> {
    let timeout = shared.config.connect_timeout;
    let packet = match tokio::time::timeout(timeout, read_first(socket, codec, rbuf)).await {
        Err(_) => return Err(fail("timeout")),
        Ok(Err(ReadError::WrongVersion(level))) => {
            // Answer in 3.1.1 form, which every client version understands.
            let _ = socket.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            warn!(
                level,
                "CONNECT for an MQTT version this listener does not serve"
            );
            return Err(fail("unsupported_version"));
        }
        Ok(Err(ReadError::Closed)) => return Err(fail("socket_closed")),
        Ok(Err(e)) => {
            // MQTT 5 lets the server say why before it closes (CONNACK 0x81 / 0x95).
            let code = match e {
                ReadError::TooLarge(_) => ConnectReturnCode::PacketTooLarge,
                _ => ConnectReturnCode::MalformedPacket,
            };
            if codec.is_v5() && rbuf.first() == Some(&0x10) {
                write_connack(shared, socket, codec, code, false, None).await;
            }
            warn!(error = %e, "CONNECT refused");
            Counters::inc(&shared.counters.connects_refused);
            ::metrics::counter!(metrics::CONNECTS, "reason" => "protocol_error").increment(1);
            return Err(fail("protocol_error"));
        }
        Ok(Ok(p)) => p,
    };
    let Packet::Connect(connect, props, will, will_props, login) = packet else {
        return Err(fail("protocol_error"));
    };
    let v5 = codec.is_v5();
    let mut client_id = connect.client_id.clone();
    let mut assigned = None;
    let refuse_client_id = |why: String| Refusal::ClientIdInvalid(why);
    let id_problem = if client_id.len() > shared.config.max_client_id_len {
        Some(refuse_client_id(format!(
            "client id is {} bytes, over the {}-byte limit",
            client_id.len(),
            shared.config.max_client_id_len
        )))
    } else if client_id.contains(['+', '#', '/', '$']) || client_id.starts_with(LOCAL_PREFIX) {
        Some(refuse_client_id(
            "client id uses a reserved character or prefix".into(),
        ))
    } else if client_id.is_empty() && !connect.clean_session {
        Some(refuse_client_id(
            "an empty client id needs a clean session".into(),
        ))
    } else {
        None
    };
    if let Some(r) = id_problem {
        return Err(refuse(shared, socket, codec, &client_id, r).await);
    }
    if client_id.is_empty() {
        client_id = assign_client_id();
        assigned = Some(client_id.clone());
    }

    let claims: Vec<String> = props
        .iter()
        .flat_map(|p| p.user_properties.iter())
        .filter(|(k, _)| k == USER_PROPERTY_ENDPOINT_ID)
        .map(|(_, v)| v.clone())
        .collect();
    let user_property_eid = claims.first().cloned();
    if let Some(first) = &user_property_eid
        && let Some(other) = claims.iter().find(|v| *v != first)
    {
        let r = Refusal::EndpointMismatch {
            bound: first.chars().take(128).collect(),
            claimed: other.chars().take(128).collect(),
        };
        return Err(refuse(shared, socket, codec, &client_id, r).await);
    }
    let verified = match (&shared.credentials, &login) {
        (Some(creds), Some(login)) => {
            let (user, pass) = (&login.username, login.password.as_bytes());
            match shared.login.check(creds, remote.ip(), user, pass).await {
                Ok(v) => Some(v),
                Err(r) => return Err(refuse(shared, socket, codec, &client_id, r).await),
            }
        }
        _ => None,
    };
    let offer = Offer {
        cert_eid,
        user_property_eid: user_property_eid.as_deref(),
        client_id: &connect.client_id,
    };
    let empty = auth::Credentials::default();
    let creds = shared.credentials.as_ref().unwrap_or(&empty);
    let (eid, role) = match auth::bind(&offer, verified, creds, shared.config.allow_anonymous) {
        Ok(x) => x,
        Err(r) => return Err(refuse(shared, socket, codec, &client_id, r).await),
    };
    let identity = Identity { eid, role };

    let requested = Duration::from_secs(u64::from(connect.keep_alive));
    let (min, max) = (shared.config.keep_alive_min, shared.config.keep_alive_max);
    let keep_alive = if requested.is_zero() {
        max
    } else {
        requested.clamp(min, max)
    };

    // Checked and bound before the router sees the client id: the router would otherwise end
    // the owner's connection and hand its session to whoever asked.
    if shared
        .sessions
        .claim(&client_id, &identity.eid, conn_no, !connect.clean_session)
        .is_err()
    {
        return Err(refuse_in_use(shared, socket, codec, &client_id, &identity.eid).await);
    }
    let factory = shared.link.clone();
    let (cid, clean) = (client_id.clone(), connect.clean_session);
    let registered = tokio::task::spawn_blocking(move || factory(&cid, clean)).await;
    let (link_tx, link_rx, ack) = match registered {
        Ok(Ok(x)) => x,
        _ => {
            shared.sessions.release(&client_id, conn_no);
            warn!(client_id = %client_id, "router refused the connection");
            let code = if v5 {
                ConnectReturnCode::ServerBusy
            } else {
                ConnectReturnCode::ServiceUnavailable
            };
            write_connack(shared, socket, codec, code, false, None).await;
            Counters::inc(&shared.counters.connects_refused);
            ::metrics::counter!(metrics::CONNECTS, "reason" => "server_busy").increment(1);
            return Err(fail("server_busy"));
        }
    };
    let session_present = matches!(
        Option::<Packet>::from(ack),
        Some(Packet::ConnAck(
            ConnAck {
                session_present: true,
                ..
            },
            _
        ))
    );

    let own_topic = shared.acl.own_topic(&identity);
    let props = v5.then(|| ConnAckProperties {
        max_packet_size: Some(shared.config.max_packet_size),
        assigned_client_identifier: assigned,
        shared_subscription_available: Some(0),
        server_keep_alive: (keep_alive != requested)
            .then(|| u16::try_from(keep_alive.as_secs()).unwrap_or(u16::MAX)),
        response_information: props
            .as_ref()
            .and_then(|p| p.request_response_info)
            .filter(|r| *r == 1)
            .map(|_| own_topic.clone()),
        user_properties: vec![(USER_PROPERTY_SUBSCRIBE_TOPIC.to_owned(), own_topic)],
        ..ConnAckProperties::default()
    });
    if !write_connack(
        shared,
        socket,
        codec,
        ConnectReturnCode::Success,
        session_present,
        props,
    )
    .await
    {
        shared.sessions.release(&client_id, conn_no);
        return Err(fail("socket_closed"));
    }
    Counters::inc(&shared.counters.connects_accepted);
    ::metrics::counter!(metrics::CONNECTS, "reason" => "accepted").increment(1);
    Ok(Established {
        client_id,
        identity,
        link_tx,
        link_rx,
        keep_alive,
        will: will.map(|w| (w, will_props)),
    })
}

async fn read_first<S: AsyncRead + Unpin>(
    socket: &mut S,
    codec: &mut Codec,
    rbuf: &mut BytesMut,
) -> Result<Packet, ReadError> {
    loop {
        // Anything but CONNECT first is not an MQTT client: no need to wait for more bytes.
        if rbuf.first().is_some_and(|b| *b != 0x10) {
            return Err(ReadError::Malformed("first packet is not CONNECT".into()));
        }
        if let Some(p) = codec.read(rbuf, MAX_CONNECT_SIZE)? {
            return Ok(p);
        }
        rbuf.reserve(4096);
        match socket.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => {}
        }
    }
}

async fn refuse<S: AsyncWrite + Unpin>(
    shared: &Shared,
    socket: &mut S,
    codec: &Codec,
    client_id: &str,
    r: Refusal,
) -> Failed {
    warn!(client_id = %client_id.chars().take(80).collect::<String>(), reason = %r, "CONNECT refused");
    let code = match (&r, codec.is_v5()) {
        (Refusal::BadCredentials, _) => ConnectReturnCode::BadUserNamePassword,
        (Refusal::Throttled(_), true) => ConnectReturnCode::ConnectionRateExceeded,
        (Refusal::Busy, true) => ConnectReturnCode::ServerBusy,
        (Refusal::Throttled(_) | Refusal::Busy, false) => ConnectReturnCode::ServiceUnavailable,
        (Refusal::ClientIdInvalid(_), _) => ConnectReturnCode::ClientIdentifierNotValid,
        (Refusal::NotAuthorized(_) | Refusal::EndpointMismatch { .. }, _) => {
            ConnectReturnCode::NotAuthorized
        }
    };
    let props = codec.is_v5().then(|| ConnAckProperties {
        reason_string: Some(r.to_string().chars().take(256).collect()),
        ..ConnAckProperties::default()
    });
    write_connack(shared, socket, codec, code, false, props).await;
    Counters::inc(&shared.counters.connects_refused);
    ::metrics::counter!(metrics::CONNECTS, "reason" => r.reason()).increment(1);
    fail(r.reason())
}

/// The client id belongs to another Endpoint ID: refused with "client identifier not valid"
/// (MQTT 5 0x85, 3.1.1 code 2); the owner's connection and session are untouched.
async fn refuse_in_use<S: AsyncWrite + Unpin>(
    shared: &Shared,
    socket: &mut S,
    codec: &Codec,
    client_id: &str,
    eid: &str,
) -> Failed {
    warn!(client_id = %client_id.chars().take(80).collect::<String>(), endpoint_id = %eid, reason = "client_id_in_use", "CONNECT refused: client id belongs to another endpoint");
    let props = codec.is_v5().then(|| ConnAckProperties {
        reason_string: Some("client id is bound to another endpoint".into()),
        ..ConnAckProperties::default()
    });
    let code = ConnectReturnCode::ClientIdentifierNotValid;
    write_connack(shared, socket, codec, code, false, props).await;
    Counters::inc(&shared.counters.connects_refused);
    ::metrics::counter!(metrics::CONNECTS, "reason" => "client_id_in_use").increment(1);
    fail("client_id_in_use")
}

/// Writes a CONNACK within `connect_timeout`: a client that sends CONNECT and never reads
/// must not hold the task.
async fn write_connack<S: AsyncWrite + Unpin>(
    shared: &Shared,
    socket: &mut S,
    codec: &Codec,
    code: ConnectReturnCode,
    session_present: bool,
    props: Option<ConnAckProperties>,
) -> bool {
    let mut buf = BytesMut::with_capacity(256);
    let ack = ConnAck {
        session_present,
        code,
    };
    if !codec.write(Packet::ConnAck(ack, props), &mut buf) {
        return false;
    }
    let write = async { socket.write_all(&buf).await.is_ok() && socket.flush().await.is_ok() };
    tokio::time::timeout(shared.config.connect_timeout, write)
        .await
        .unwrap_or(false)
}
