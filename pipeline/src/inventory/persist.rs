//! The inventory state file: what identifies each device, saved every `persist_interval`
//! and at shutdown, read back at start.
//!
//! The file is JSON (`{"version":1,"devices":[…]}`), replaced atomically: written to a
//! temporary file, fsynced, renamed over the old one, and the directory fsynced, so a crash
//! leaves the previous or the new state, never a torn one. A file that cannot be parsed is
//! moved aside (`<name>.corrupt-<ms>`) and the gateway starts with an empty inventory rather
//! than not at all; nothing is deleted.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{BootInfo, DeviceState, FLEET_CHUNK, Inventory, OnBoardInfo, Provisioning};
use crate::error::{Error, Result};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    devices: Vec<Saved>,
}

/// One device as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Saved {
    endpoint_id: String,
    #[serde(default)]
    first_seen_ms: Option<i64>,
    #[serde(default)]
    last_seen_ms: Option<i64>,
    #[serde(default)]
    last_disconnect_reason: Option<String>,
    #[serde(default)]
    mqtt_version: Option<String>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    software_version: Option<String>,
    #[serde(default)]
    serial_number: Option<String>,
    #[serde(default)]
    boot: Option<BootInfo>,
    #[serde(default)]
    boot_count: u64,
    #[serde(default)]
    onboard: Option<OnBoardInfo>,
    #[serde(default)]
    provisioning: Option<Provisioning>,
}

impl Saved {
    fn of(id: &str, d: &DeviceState) -> Saved {
        Saved {
            endpoint_id: id.to_string(),
            first_seen_ms: d.first_seen_ms,
            last_seen_ms: d.last_seen_ms,
            last_disconnect_reason: if d.online {
                // Still connected when saved: if this is the last save, the gateway stopped
                // (or died) under it.
                Some("gateway_restart".to_string())
            } else {
                d.last_disconnect_reason.clone()
            },
            mqtt_version: d.mqtt_version.clone(),
            model_name: d.model_name.clone(),
            software_version: d.software_version.clone(),
            serial_number: d.serial_number.clone(),
            boot: d.boot.clone(),
            boot_count: d.boot_count,
            onboard: d.onboard.clone(),
            provisioning: d.provisioning.clone(),
        }
    }

    /// The device as it is after a restart: known, offline until it reconnects.
    pub(super) fn into_state(self) -> (String, DeviceState) {
        let d = DeviceState {
            online: false,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            last_disconnect_reason: self.last_disconnect_reason,
            mqtt_version: self.mqtt_version,
            model_name: self.model_name,
            software_version: self.software_version,
            serial_number: self.serial_number,
            boot: self.boot,
            boot_count: self.boot_count,
            onboard: self.onboard,
            provisioning: self.provisioning,
            ..DeviceState::default()
        };
        (self.endpoint_id, d)
    }
}

/// Reads the saved devices; none when the file does not exist yet.
pub(super) fn load(path: &Path) -> Result<Vec<Saved>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Inventory {
                path: path.to_path_buf(),
                detail: e.to_string(),
            });
        }
    };
    match serde_json::from_slice::<File>(&bytes) {
        Ok(f) if f.version == VERSION => {
            info!(path = %path.display(), devices = f.devices.len(), "inventory state loaded");
            Ok(f.devices)
        }
        Ok(f) => {
            set_aside(path, &format!("unknown version {}", f.version))?;
            Ok(Vec::new())
        }
        Err(e) => {
            set_aside(path, &e.to_string())?;
            Ok(Vec::new())
        }
    }
}

fn set_aside(path: &Path, why: &str) -> Result<()> {
    let aside = sibling(path, &format!("corrupt-{}", crate::now_ms()));
    fs::rename(path, &aside).map_err(|e| Error::Inventory {
        path: path.to_path_buf(),
        detail: format!("unreadable ({why}) and could not be moved aside: {e}"),
    })?;
    warn!(path = %path.display(), moved_to = %aside.display(), reason = why, "inventory state file unreadable; starting empty");
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

/// The devices to save, a chunk per read lock (as [`Inventory::fleet`] does).
fn snapshot(inv: &Inventory) -> Vec<Saved> {
    let ids: Vec<String> = inv.state.read().devices.keys().cloned().collect();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(FLEET_CHUNK) {
        let st = inv.state.read();
        for id in chunk {
            if let Some(d) = st.devices.get(id) {
                out.push(Saved::of(id, d));
            }
        }
    }
    out.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
    out
}

/// Writes the state file atomically.
pub(super) fn save(inv: &Inventory, path: &Path) -> Result<usize> {
    let devices = snapshot(inv);
    let n = devices.len();
    let io = |e: std::io::Error| Error::Inventory {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let body = serde_json::to_vec(&File {
        version: VERSION,
        devices,
    })
    .map_err(|e| Error::Encode(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = sibling(path, "tmp");
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(&body).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Makes the rename itself durable.
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(n)
}

/// Evicts and saves every `every` while something changed, and once more at shutdown.
pub(crate) async fn run(
    inv: Inventory,
    path: PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        inv.evict(crate::now_ms());
        if inv.take_dirty() || stopping {
            let (inv2, path2) = (inv.clone(), path.clone());
            match tokio::task::spawn_blocking(move || save(&inv2, &path2)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    // Try again next round.
                    inv.changed();
                    warn!(error = %e, "inventory state not saved");
                }
                Err(e) => warn!(error = %e, "inventory state writer failed"),
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InventoryConfig;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use uspwatch_proto::{Event, PresenceEvent, PresenceState, builder, rfc3339_millis};

    const EID: &str = "os::00256D-0001";

    fn presence(eid: &str, state: PresenceState, at_ms: i64) -> PresenceEvent {
        PresenceEvent {
            endpoint_id: eid.into(),
            state,
            reason: "connect".into(),
            mqtt_version: "5".into(),
            client_id: "c".into(),
            remote_addr: None,
            at: rfc3339_millis(at_ms),
            at_ms,
        }
    }

    fn boot(eid: &str, at_ms: i64, version: &str) -> Arc<Event> {
        let args = BTreeMap::from([
            ("Cause".to_string(), "LocalReboot".to_string()),
            (
                "ParameterMap".to_string(),
                format!(
                    r#"{{"Device.DeviceInfo.SoftwareVersion":"{version}","Device.DeviceInfo.ModelName":"HGW-1","Device.DeviceInfo.SerialNumber":"SN1"}}"#
                ),
            ),
        ]);
        let m = builder::event("b", "s", true, "Device.", "Boot!", args);
        let r = builder::wrap(&m, eid, "self::uspwatch");
        Arc::new(Event::from_notify(&r, &m, at_ms).expect("a notify"))
    }

    #[test]
    fn a_new_instance_lists_saved_devices_offline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("inventory.json");
        let cfg = InventoryConfig::default();
        let now = crate::now_ms();
        let inv = Inventory::open(&cfg, &path).expect("open");
        inv.on_presence(&presence(EID, PresenceState::Connected, now - 5_000));
        inv.on_event(&boot(EID, now - 4_000, "2.0"));
        inv.on_event(&boot(EID, now - 3_000, "2.1"));
        inv.set_provisioning(
            EID,
            Provisioning {
                state: "partial".into(),
                detail: Some("7026 Invalid path".into()),
                at_ms: now,
            },
        );
        inv.touch(EID, now - 1_000, Some("5"));
        assert_eq!(save(&inv, &path).expect("save"), 1);
        let before = inv.get(EID).expect("known").device;
        drop(inv);

        let again = Inventory::open(&cfg, &path).expect("reopen");
        let d = again.get(EID).expect("still listed").device;
        assert_eq!(d.status, super::super::DeviceStatus::Offline);
        assert!(!d.online && !d.stale);
        assert_eq!(d.first_seen, before.first_seen);
        assert_eq!(d.last_seen_ms, Some(now - 1_000));
        assert_eq!(d.software_version.as_deref(), Some("2.1"));
        assert_eq!(d.model_name.as_deref(), Some("HGW-1"));
        assert_eq!(d.serial_number.as_deref(), Some("SN1"));
        assert_eq!(d.boot_count, 2);
        assert_eq!(d.last_boot, before.last_boot);
        assert_eq!(d.provisioning, before.provisioning);
        assert_eq!(d.last_disconnect_reason.as_deref(), Some("gateway_restart"));
        assert_eq!(again.fleet().len(), 1);

        // Staleness still works once it reconnects.
        again.on_presence(&presence(EID, PresenceState::Connected, now));
        again.touch(EID, now - 16 * 60_000, None);
        assert_eq!(
            again.get(EID).expect("known").device.status,
            super::super::DeviceStatus::Stale
        );
    }

    #[test]
    fn unreadable_state_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("inventory.json");
        fs::write(&path, b"{\"version\":1,\"devices\":[{\"endp").expect("write");
        let inv = Inventory::open(&InventoryConfig::default(), &path).expect("open");
        assert!(inv.snapshot().is_empty());
        let aside: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn the_writer_saves_at_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("inventory.json");
        let cfg = InventoryConfig::default();
        let inv = Inventory::open(&cfg, &path).expect("open");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            inv.clone(),
            path.clone(),
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        inv.touch(EID, crate::now_ms(), None);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("writer stops")
            .expect("writer task");
        let again = Inventory::open(&cfg, &path).expect("reopen");
        assert!(again.get(EID).is_some());
    }
}
