//! Accept loops: TCP_NODELAY on every socket, the connection limit, TLS and the client
//! certificate's Endpoint ID, then one task per connection.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::ListenerKind;
use crate::connection;
use crate::metrics;
use crate::state::{Counters, Shared};
use crate::tls::endpoint_id_of;

pub(crate) fn spawn(
    shared: Arc<Shared>,
    listener: TcpListener,
    kind: ListenerKind,
    tls: Option<TlsAcceptor>,
    slots: Arc<Semaphore>,
) {
    tokio::spawn(async move {
        let shutdown = shared.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (socket, remote) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(listener = ?kind, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without this, Nagle + delayed ACK add ~40 ms to every request/response.
            if let Err(e) = socket.set_nodelay(true) {
                debug!(error = %e, "TCP_NODELAY not set");
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                Counters::inc(&shared.counters.connects_refused);
                ::metrics::counter!(metrics::CONNECTS, "reason" => "server_busy").increment(1);
                warn!(%remote, "max_connections reached, closing new socket");
                continue;
            };
            let shared = shared.clone();
            let tls = tls.clone();
            let v5 = kind.is_v5();
            tokio::spawn(async move {
                let _permit = permit;
                let Some(acceptor) = tls else {
                    connection::serve(shared, socket, remote, v5, false, None).await;
                    return;
                };
                let timeout = shared.config.connect_timeout;
                match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        let eid = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| endpoint_id_of(c));
                        connection::serve(shared, stream, remote, v5, true, eid).await;
                    }
                    Ok(Err(e)) => {
                        ::metrics::counter!(metrics::CONNECTS, "reason" => "tls_handshake")
                            .increment(1);
                        Counters::inc(&shared.counters.connects_refused);
                        warn!(%remote, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        ::metrics::counter!(metrics::CONNECTS, "reason" => "timeout").increment(1);
                        Counters::inc(&shared.counters.connects_refused);
                    }
                }
            });
        }
    });
}
