//! Who owns a client id, and the client ids the broker assigns.
//!
//! MQTT lets a new connection with the same client id take over the old one and its
//! persistent session. That is only safe when both are the same identity: otherwise device B
//! could kick device A off and inherit the requests queued for A. So a client id belongs to
//! the Endpoint ID that first used it, for as long as the router may hold a session for it:
//! while a connection with it is up, and afterwards while its persistent session lives.

use std::collections::HashMap;

use parking_lot::Mutex;
use rand::RngCore;

/// Prefix of the client ids the broker assigns (MQTT 5 CONNECT with an empty client id).
pub(crate) const ASSIGNED_PREFIX: &str = "uspwatch-";

/// A fresh client id: 128 random bits from the thread's CSPRNG (seeded by the OS), so ids
/// never repeat across restarts and cannot be guessed to take a session over.
pub(crate) fn assign_client_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut id = String::with_capacity(ASSIGNED_PREFIX.len().saturating_add(32));
    id.push_str(ASSIGNED_PREFIX);
    for b in bytes {
        id.push(hex_digit(b >> 4));
        id.push(hex_digit(b & 0x0f));
    }
    id
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

#[derive(Debug)]
struct Owner {
    eid: String,
    /// The connection now using the client id, if any.
    conn: Option<u64>,
    /// The router keeps a session for this client id after its connection ends.
    persistent: bool,
}

/// Client id → owning Endpoint ID. An entry lives while a connection uses the client id or
/// the router holds its persistent session, so memory is bounded by the router's sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    owners: Mutex<HashMap<String, Owner>>,
}

/// The client id is bound to another Endpoint ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedByOther;

impl Sessions {
    /// Binds `client_id` to `eid` for connection `conn`, or refuses when another identity owns
    /// it. A reconnect by the owner takes the client id over (MQTT semantics).
    pub(crate) fn claim(
        &self,
        client_id: &str,
        eid: &str,
        conn: u64,
        persistent: bool,
    ) -> Result<(), OwnedByOther> {
        let mut owners = self.owners.lock();
        if let Some(o) = owners.get_mut(client_id) {
            if o.eid != eid {
                return Err(OwnedByOther);
            }
            o.conn = Some(conn);
            o.persistent = persistent;
            return Ok(());
        }
        owners.insert(
            client_id.to_owned(),
            Owner {
                eid: eid.to_owned(),
                conn: Some(conn),
                persistent,
            },
        );
        Ok(())
    }

    /// Whether `conn` is the newest connection with `client_id`; an older connection that
    /// loses its router link was taken over.
    pub(crate) fn is_current(&self, client_id: &str, conn: u64) -> bool {
        self.owners
            .lock()
            .get(client_id)
            .is_none_or(|o| o.conn == Some(conn))
    }

    /// Connection `conn` ended. The binding stays while the router keeps a persistent session
    /// for the client id; a newer connection's binding is left alone.
    pub(crate) fn release(&self, client_id: &str, conn: u64) {
        let mut owners = self.owners.lock();
        let Some(o) = owners.get_mut(client_id) else {
            return;
        };
        if o.conn != Some(conn) {
            return;
        }
        if o.persistent {
            o.conn = None;
        } else {
            owners.remove(client_id);
        }
    }

    /// Client ids bound now (connected or with a persistent session).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.owners.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_belongs_to_its_first_identity() {
        let s = Sessions::default();
        assert_eq!(s.claim("cpe", "os::A", 1, true), Ok(()));
        assert_eq!(s.claim("cpe", "os::B", 2, true), Err(OwnedByOther));
        assert!(s.is_current("cpe", 1));
        // The owner reconnecting takes over.
        assert_eq!(s.claim("cpe", "os::A", 3, true), Ok(()));
        assert!(!s.is_current("cpe", 1));
        s.release("cpe", 1);
        assert!(s.is_current("cpe", 3));
        // A persistent session keeps the binding after the connection ends.
        s.release("cpe", 3);
        assert_eq!(s.claim("cpe", "os::B", 4, false), Err(OwnedByOther));
        // A clean session by the owner ends it for good.
        assert_eq!(s.claim("cpe", "os::A", 5, false), Ok(()));
        s.release("cpe", 5);
        assert_eq!(s.len(), 0);
        assert_eq!(s.claim("cpe", "os::B", 6, false), Ok(()));
    }

    #[test]
    fn assigned_ids_are_long_and_distinct() {
        let a = assign_client_id();
        let b = assign_client_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), ASSIGNED_PREFIX.len() + 32);
        assert!(
            a[ASSIGNED_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
    }
}
