//! Inventory and presence: what we know about each device, from the inventory file
//! (static labels), presence events (connect/disconnect) and its notifications (Boot!,
//! OnBoardRequest, values, Bulk Data samples).
//!
//! What identifies a device (first/last seen, model, firmware, serial, last boot, boot count,
//! provisioning state) survives restarts through a state file (`persist`); latest values and
//! recent events are rebuilt from traffic. Devices offline for `evict_after`, and the oldest
//! offline ones beyond `max_devices`, are forgotten so the map stays bounded.

mod file;
mod persist;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use uspwatch_proto::time::millis;
use uspwatch_proto::{Event, EventKind, PresenceEvent, PresenceState, rfc3339_millis};

use crate::config::InventoryConfig;
use crate::error::Result;

pub(crate) use file::Labels;
pub(crate) use persist::run as run_persist;

/// The exact parameter paths inventory fields are read from. Matching a suffix instead would
/// let a device shadow them with any parameter whose path ends the same way.
pub const MODEL_NAME_PATH: &str = "Device.DeviceInfo.ModelName";
/// See [`MODEL_NAME_PATH`].
pub const SOFTWARE_VERSION_PATH: &str = "Device.DeviceInfo.SoftwareVersion";
/// See [`MODEL_NAME_PATH`].
pub const SERIAL_NUMBER_PATH: &str = "Device.DeviceInfo.SerialNumber";

/// Shared, cheaply cloned view of the fleet.
#[derive(Clone)]
pub struct Inventory {
    cfg: Arc<InventoryConfig>,
    state: Arc<RwLock<State>>,
    /// Set by every change worth saving; cleared by the state file writer.
    dirty: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    labels: HashMap<String, Labels>,
    devices: HashMap<String, DeviceState>,
}

#[derive(Default)]
struct DeviceState {
    online: bool,
    connected_since_ms: Option<i64>,
    first_seen_ms: Option<i64>,
    last_seen_ms: Option<i64>,
    mqtt_version: Option<String>,
    client_id: Option<String>,
    remote_addr: Option<String>,
    last_disconnect_reason: Option<String>,
    boot: Option<BootInfo>,
    boot_count: u64,
    onboard: Option<OnBoardInfo>,
    model_name: Option<String>,
    software_version: Option<String>,
    serial_number: Option<String>,
    provisioning: Option<Provisioning>,
    latest: HashMap<String, LatestValue>,
    latest_order: VecDeque<String>,
    recent: VecDeque<Arc<Event>>,
}

/// Presence as reported in [`Device::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Connected and heard from within `stale_after`.
    Online,
    /// Connected but silent for `stale_after` or longer.
    Stale,
    /// Disconnected.
    Offline,
    /// Only known from the inventory file.
    Unknown,
}

/// Devices per read lock in [`Inventory::fleet`].
const FLEET_CHUNK: usize = 512;

/// A device as the rule engine sees it; see [`Inventory::fleet`].
#[derive(Debug, Clone)]
pub struct FleetDevice {
    pub endpoint_id: String,
    pub online: bool,
    pub stale: bool,
    pub last_seen_ms: Option<i64>,
    pub software_version: Option<String>,
    pub model_name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Connected but silent for `stale_ms` or longer.
fn is_stale(d: &DeviceState, now: i64, stale_ms: i64) -> bool {
    d.online && d.last_seen_ms.is_none_or(|t| now - t >= stale_ms)
}

/// One device in the fleet overview.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub endpoint_id: String,
    pub status: DeviceStatus,
    pub online: bool,
    pub stale: bool,
    pub connected_since: Option<String>,
    pub last_seen: Option<String>,
    pub last_seen_ms: Option<i64>,
    pub mqtt_version: Option<String>,
    pub remote_addr: Option<String>,
    pub last_disconnect_reason: Option<String>,
    pub software_version: Option<String>,
    pub model_name: Option<String>,
    pub serial_number: Option<String>,
    pub first_seen: Option<String>,
    pub last_boot: Option<String>,
    /// Boot! events received since the device was first seen.
    pub boot_count: u64,
    pub provisioning: Option<Provisioning>,
    pub labels: BTreeMap<String, String>,
}

/// Where provisioning of a device stands, as the provisioning engine last set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioning {
    /// `provisioned`, `pending`, `partial` or `failed`.
    pub state: String,
    /// Why it is `partial` or `failed` (e.g. the USP error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the state was set, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The last `Device.Boot!` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootInfo {
    pub at: String,
    pub cause: Option<String>,
    pub reason: Option<String>,
    pub command_key: Option<String>,
    pub firmware_updated: Option<bool>,
    /// The `ParameterMap` values (e.g. `Device.DeviceInfo.SoftwareVersion`).
    pub parameters: BTreeMap<String, String>,
}

/// The last OnBoardRequest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnBoardInfo {
    pub at: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
    pub protocol_versions: String,
}

/// A parameter's latest reported value.
#[derive(Debug, Clone, Serialize)]
pub struct LatestValue {
    pub value: String,
    pub at: String,
}

/// Everything known about one device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: Device,
    pub boot: Option<BootInfo>,
    pub onboard: Option<OnBoardInfo>,
    pub latest: BTreeMap<String, LatestValue>,
    pub recent_events: Vec<Event>,
}

impl Inventory {
    /// Loads the inventory (labels) file, if configured; no saved state.
    pub fn load(cfg: &InventoryConfig) -> Result<Inventory> {
        let labels = match &cfg.file {
            Some(p) => file::load(p)?,
            None => HashMap::new(),
        };
        Ok(Inventory {
            cfg: Arc::new(cfg.clone()),
            state: Arc::new(RwLock::new(State {
                labels,
                devices: HashMap::new(),
            })),
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Loads the labels file and the devices saved in `state_file` (every one offline until
    /// it reconnects), then forgets those past `evict_after` or `max_devices`.
    pub fn open(cfg: &InventoryConfig, state_file: &std::path::Path) -> Result<Inventory> {
        let inv = Inventory::load(cfg)?;
        let saved = persist::load(state_file)?;
        {
            let mut st = inv.state.write();
            for s in saved {
                let (id, d) = s.into_state();
                st.devices.insert(id, d);
            }
        }
        inv.evict(crate::now_ms());
        Ok(inv)
    }

    /// Records the provisioning state of a device (known to the inventory or not yet).
    pub fn set_provisioning(&self, endpoint_id: &str, p: Provisioning) {
        let mut st = self.state.write();
        if let Some(d) = device_mut(&mut st.devices, endpoint_id) {
            d.first_seen_ms.get_or_insert(p.at_ms);
            d.provisioning = Some(p);
        }
        self.changed();
    }

    /// Forgets offline devices unseen for `evict_after`, then the longest-unseen offline
    /// devices beyond `max_devices`. Connected devices are never forgotten. Returns how many
    /// were removed.
    pub fn evict(&self, now_ms: i64) -> usize {
        let max_age = millis(self.cfg.evict_after);
        let mut st = self.state.write();
        let before = st.devices.len();
        let seen = |d: &DeviceState| d.last_seen_ms.or(d.first_seen_ms).unwrap_or(i64::MIN);
        st.devices
            .retain(|_, d| d.online || now_ms.saturating_sub(seen(d)) < max_age);
        let excess = st.devices.len().saturating_sub(self.cfg.max_devices);
        if excess > 0 {
            let mut offline: Vec<(i64, String)> = st
                .devices
                .iter()
                .filter(|(_, d)| !d.online)
                .map(|(id, d)| (seen(d), id.clone()))
                .collect();
            offline.sort_unstable();
            for (_, id) in offline.into_iter().take(excess) {
                st.devices.remove(&id);
            }
        }
        let removed = before - st.devices.len();
        drop(st);
        if removed > 0 {
            metrics::counter!(crate::metrics::INVENTORY_EVICTED).increment(removed as u64);
            self.changed();
        }
        removed
    }

    fn changed(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Whether anything changed since the last call (the state file writer asks).
    pub(crate) fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::Relaxed)
    }

    /// Every device known from the file or from traffic, ordered by Endpoint ID.
    pub fn snapshot(&self) -> Vec<Device> {
        let now = crate::now_ms();
        let st = self.state.read();
        let mut ids: Vec<&String> = st.devices.keys().chain(st.labels.keys()).collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .map(|id| self.device(&st, id, now))
            .collect()
    }

    /// What the rule engine needs of every device (presence, labels, version, model).
    ///
    /// Built a chunk of devices per read lock: a whole-fleet pass holds the lock for tens of
    /// milliseconds at 20,000 devices, and every Notify waits on it to record its device.
    pub fn fleet(&self) -> Vec<FleetDevice> {
        let now = crate::now_ms();
        let stale_ms = millis(self.cfg.stale_after);
        let mut ids: Vec<String> = {
            let st = self.state.read();
            st.devices.keys().chain(st.labels.keys()).cloned().collect()
        };
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        let mut ids = ids.into_iter().peekable();
        while ids.peek().is_some() {
            let st = self.state.read();
            for id in ids.by_ref().take(FLEET_CHUNK) {
                let labels = st.labels.get(&id).cloned().unwrap_or_default();
                let device = match st.devices.get(&id) {
                    Some(d) => FleetDevice {
                        online: d.online,
                        stale: is_stale(d, now, stale_ms),
                        last_seen_ms: d.last_seen_ms,
                        software_version: d.software_version.clone(),
                        model_name: d.model_name.clone(),
                        labels,
                        endpoint_id: id,
                    },
                    None => FleetDevice {
                        endpoint_id: id,
                        online: false,
                        stale: false,
                        last_seen_ms: None,
                        software_version: None,
                        model_name: None,
                        labels,
                    },
                };
                out.push(device);
            }
        }
        out
    }

    /// One device in detail.
    pub fn get(&self, endpoint_id: &str) -> Option<DeviceDetail> {
        let now = crate::now_ms();
        let st = self.state.read();
        let d = st.devices.get(endpoint_id);
        if d.is_none() && !st.labels.contains_key(endpoint_id) {
            return None;
        }
        let device = self.device(&st, endpoint_id, now);
        Some(DeviceDetail {
            device,
            boot: d.and_then(|d| d.boot.clone()),
            onboard: d.and_then(|d| d.onboard.clone()),
            latest: d
                .map(|d| {
                    d.latest
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            recent_events: d
                .map(|d| d.recent.iter().rev().map(|e| (**e).clone()).collect())
                .unwrap_or_default(),
        })
    }

    /// The static labels of a device.
    pub fn labels(&self, endpoint_id: &str) -> BTreeMap<String, String> {
        self.state
            .read()
            .labels
            .get(endpoint_id)
            .cloned()
            .unwrap_or_default()
    }

    fn device(&self, st: &State, id: &str, now: i64) -> Device {
        let labels = st.labels.get(id).cloned().unwrap_or_default();
        let Some(d) = st.devices.get(id) else {
            return Device {
                endpoint_id: id.to_string(),
                status: DeviceStatus::Unknown,
                online: false,
                stale: false,
                connected_since: None,
                last_seen: None,
                last_seen_ms: None,
                mqtt_version: None,
                remote_addr: None,
                last_disconnect_reason: None,
                software_version: None,
                model_name: None,
                serial_number: None,
                first_seen: None,
                last_boot: None,
                boot_count: 0,
                provisioning: None,
                labels,
            };
        };
        let stale_ms = millis(self.cfg.stale_after);
        let stale = is_stale(d, now, stale_ms);
        let status = match (d.online, stale) {
            (true, false) => DeviceStatus::Online,
            (true, true) => DeviceStatus::Stale,
            (false, _) => DeviceStatus::Offline,
        };
        Device {
            endpoint_id: id.to_string(),
            status,
            online: d.online,
            stale,
            connected_since: d.connected_since_ms.map(rfc3339_millis),
            last_seen: d.last_seen_ms.map(rfc3339_millis),
            last_seen_ms: d.last_seen_ms,
            mqtt_version: d.mqtt_version.clone(),
            remote_addr: d.remote_addr.clone(),
            last_disconnect_reason: d.last_disconnect_reason.clone(),
            software_version: d.software_version.clone(),
            model_name: d.model_name.clone(),
            serial_number: d.serial_number.clone(),
            first_seen: d.first_seen_ms.map(rfc3339_millis),
            last_boot: d.boot.as_ref().map(|b| b.at.clone()),
            boot_count: d.boot_count,
            provisioning: d.provisioning.clone(),
            labels,
        }
    }

    pub(crate) fn on_presence(&self, p: &PresenceEvent) {
        self.changed();
        let mut st = self.state.write();
        let d = st.devices.entry(p.endpoint_id.clone()).or_default();
        match p.state {
            PresenceState::Connected => {
                d.first_seen_ms.get_or_insert(p.at_ms);
                d.online = true;
                d.connected_since_ms = Some(p.at_ms);
                d.last_seen_ms = Some(p.at_ms);
                d.mqtt_version = Some(p.mqtt_version.clone());
                d.client_id = Some(p.client_id.clone());
                d.remote_addr = p.remote_addr.clone();
            }
            PresenceState::Disconnected => {
                d.online = false;
                d.connected_since_ms = None;
                d.last_disconnect_reason = Some(p.reason.clone());
            }
        }
    }

    /// Any record from the device: it is alive.
    pub(crate) fn touch(&self, endpoint_id: &str, at_ms: i64, mqtt_version: Option<&str>) {
        self.changed();
        let mut st = self.state.write();
        let Some(d) = device_mut(&mut st.devices, endpoint_id) else {
            return;
        };
        d.first_seen_ms.get_or_insert(at_ms);
        d.last_seen_ms = Some(at_ms);
        if !d.online {
            // Traffic proves a connection even if its presence event went missing.
            d.online = true;
            d.connected_since_ms.get_or_insert(at_ms);
        }
        if let Some(v) = mqtt_version
            && d.mqtt_version.as_deref() != Some(v)
        {
            d.mqtt_version = Some(v.to_string());
        }
    }

    /// A DisconnectRecord from the device.
    pub(crate) fn disconnected(&self, endpoint_id: &str, reason: &str) {
        self.changed();
        let mut st = self.state.write();
        if let Some(d) = st.devices.get_mut(endpoint_id) {
            d.online = false;
            d.connected_since_ms = None;
            d.last_disconnect_reason = Some(reason.to_string());
        }
    }

    pub(crate) fn on_event(&self, e: &Arc<Event>) {
        let (max_values, max_recent) = (self.cfg.max_values_per_device, self.cfg.recent_events);
        self.changed();
        let mut st = self.state.write();
        let Some(d) = device_mut(&mut st.devices, &e.endpoint_id) else {
            return;
        };
        match e.kind {
            EventKind::ValueChange | EventKind::Sample => {
                if let Some(v) = &e.value {
                    d.learn(&e.path, v);
                    let fresh = d
                        .latest
                        .insert(
                            e.path.clone(),
                            LatestValue {
                                value: v.clone(),
                                at: e.received_at.clone(),
                            },
                        )
                        .is_none();
                    if fresh {
                        d.latest_order.push_back(e.path.clone());
                    }
                    while d.latest_order.len() > max_values {
                        if let Some(old) = d.latest_order.pop_front() {
                            d.latest.remove(&old);
                        }
                    }
                }
            }
            EventKind::Event if e.name.as_deref() == Some("Boot!") => {
                let boot = boot_info(e);
                for (path, value) in &boot.parameters {
                    d.learn(path, value);
                }
                d.boot = Some(boot);
                d.boot_count = d.boot_count.saturating_add(1);
            }
            EventKind::OnBoardRequest => {
                let arg = |k: &str| e.args.get(k).cloned().unwrap_or_default();
                if let Some(sn) = e.args.get("serial_number").filter(|s| !s.is_empty()) {
                    d.serial_number = Some(sn.clone());
                }
                d.onboard = Some(OnBoardInfo {
                    at: e.received_at.clone(),
                    oui: arg("oui"),
                    product_class: arg("product_class"),
                    serial_number: arg("serial_number"),
                    protocol_versions: arg("agent_supported_protocol_versions"),
                });
            }
            _ => {}
        }
        // Samples arrive by the hundred per report; they would push the notifications an
        // operator looks for out of the short recent list.
        if e.kind == EventKind::Sample {
            return;
        }
        d.recent.push_back(e.clone());
        while d.recent.len() > max_recent {
            d.recent.pop_front();
        }
    }
}

impl DeviceState {
    /// Takes an inventory field from a reported value, by exact path only.
    fn learn(&mut self, path: &str, value: &str) {
        let slot = match path {
            MODEL_NAME_PATH => &mut self.model_name,
            SOFTWARE_VERSION_PATH => &mut self.software_version,
            SERIAL_NUMBER_PATH => &mut self.serial_number,
            _ => return,
        };
        if slot.as_deref() != Some(value) {
            *slot = Some(value.to_string());
        }
    }
}

/// The device's entry, created on first sight (the key is allocated only then).
fn device_mut<'a>(
    devices: &'a mut HashMap<String, DeviceState>,
    id: &str,
) -> Option<&'a mut DeviceState> {
    if !devices.contains_key(id) {
        devices.insert(id.to_string(), DeviceState::default());
    }
    devices.get_mut(id)
}

fn boot_info(e: &Event) -> BootInfo {
    let arg = |k: &str| e.args.get(k).filter(|v| !v.is_empty()).cloned();
    let parameters = arg("ParameterMap")
        .and_then(|pm| serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&pm).ok())
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    BootInfo {
        at: e.received_at.clone(),
        cause: arg("Cause"),
        reason: arg("Reason"),
        command_key: arg("CommandKey"),
        firmware_updated: arg("FirmwareUpdated").map(|v| v == "true" || v == "1"),
        parameters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uspwatch_proto::builder;

    fn event(m: &uspwatch_proto::pb::usp::Msg, at: i64) -> Arc<Event> {
        let r = builder::wrap(m, "os::00256D-1", "self::uspwatch");
        Arc::new(Event::from_notify(&r, m, at).unwrap())
    }

    #[test]
    fn presence_boot_values_and_staleness() {
        let inv = Inventory::load(&InventoryConfig {
            stale_after: Duration::from_secs(60),
            max_values_per_device: 1,
            ..InventoryConfig::default()
        })
        .unwrap();
        let now = crate::now_ms();
        inv.on_presence(&PresenceEvent {
            endpoint_id: "os::00256D-1".into(),
            state: PresenceState::Connected,
            reason: "connect".into(),
            mqtt_version: "5".into(),
            client_id: "c1".into(),
            remote_addr: Some("127.0.0.1:5000".into()),
            at: rfc3339_millis(now),
            at_ms: now,
        });
        let args = BTreeMap::from([
            ("Cause".to_string(), "RemoteReboot".to_string()),
            ("FirmwareUpdated".to_string(), "true".to_string()),
            (
                "ParameterMap".to_string(),
                r#"{"Device.DeviceInfo.SoftwareVersion":"2.1","Device.DeviceInfo.ModelName":"X1"}"#
                    .to_string(),
            ),
        ]);
        inv.on_event(&event(
            &builder::event("m1", "s", true, "Device.", "Boot!", args),
            now,
        ));
        inv.on_event(&event(
            &builder::value_change("m2", "s", true, "Device.A", "1"),
            now,
        ));
        inv.on_event(&event(
            &builder::value_change("m3", "s", true, "Device.B", "2"),
            now,
        ));
        let d = inv.get("os::00256D-1").unwrap();
        assert_eq!(d.device.status, DeviceStatus::Online);
        assert_eq!(d.device.software_version.as_deref(), Some("2.1"));
        assert_eq!(d.device.model_name.as_deref(), Some("X1"));
        assert_eq!(d.boot.as_ref().unwrap().firmware_updated, Some(true));
        assert_eq!(d.latest.keys().collect::<Vec<_>>(), ["Device.B"]);
        assert_eq!(d.recent_events.len(), 3);
        serde_json::to_string(&d).unwrap();

        inv.touch("os::00256D-1", now - 61_000, None);
        assert_eq!(inv.snapshot()[0].status, DeviceStatus::Stale);
        inv.disconnected("os::00256D-1", "bye");
        assert_eq!(inv.snapshot()[0].status, DeviceStatus::Offline);
        assert!(inv.get("os::00256D-9").is_none());
    }

    #[test]
    fn a_lookalike_path_does_not_shadow_inventory_fields() {
        let inv = Inventory::load(&InventoryConfig::default()).unwrap();
        let now = crate::now_ms();
        inv.touch("os::00256D-1", now, None);
        let args = BTreeMap::from([(
            "ParameterMap".to_string(),
            r#"{"Device.DeviceInfo.SoftwareVersion":"2.1","Device.DeviceInfo.ModelName":"X1"}"#
                .to_string(),
        )]);
        inv.on_event(&event(
            &builder::event("m1", "s", true, "Device.", "Boot!", args),
            now,
        ));
        for (i, path) in [
            "Device.X_EVIL.DeviceInfo.SoftwareVersion",
            "Device.Evil.DeviceInfo.ModelName",
            "DeviceInfo.SoftwareVersion",
        ]
        .into_iter()
        .enumerate()
        {
            inv.on_event(&event(
                &builder::value_change(&format!("v{i}"), "s", true, path, "9.9-evil"),
                now,
            ));
        }
        let d = inv.get("os::00256D-1").unwrap().device;
        assert_eq!(d.software_version.as_deref(), Some("2.1"));
        assert_eq!(d.model_name.as_deref(), Some("X1"));
        let f = &inv.fleet()[0];
        assert_eq!(f.software_version.as_deref(), Some("2.1"));
        assert_eq!(f.model_name.as_deref(), Some("X1"));
        // The exact path still updates it.
        inv.on_event(&event(
            &builder::value_change("v9", "s", true, SOFTWARE_VERSION_PATH, "2.2"),
            now,
        ));
        assert_eq!(
            inv.get("os::00256D-1")
                .unwrap()
                .device
                .software_version
                .as_deref(),
            Some("2.2")
        );
    }

    #[test]
    fn offline_devices_are_evicted_by_age_then_by_count() {
        let inv = Inventory::load(&InventoryConfig {
            evict_after: Duration::from_secs(3600),
            max_devices: 3,
            ..InventoryConfig::default()
        })
        .unwrap();
        let now = crate::now_ms();
        let connect = |eid: &str, at: i64| {
            inv.on_presence(&PresenceEvent {
                endpoint_id: eid.into(),
                state: PresenceState::Connected,
                reason: "connect".into(),
                mqtt_version: "5".into(),
                client_id: "c".into(),
                remote_addr: None,
                at: rfc3339_millis(at),
                at_ms: at,
            })
        };
        // Online for long, never evicted; offline and old, evicted by age.
        connect("os::00256D-online", now - 7_200_000);
        connect("os::00256D-old", now - 7_200_000);
        inv.disconnected("os::00256D-old", "bye");
        for (i, age) in [300_000, 200_000, 100_000].into_iter().enumerate() {
            let eid = format!("os::00256D-recent{i}");
            connect(&eid, now - age);
            inv.disconnected(&eid, "bye");
        }
        assert_eq!(inv.snapshot().len(), 5);
        // 1 by age, then 1 more (the longest unseen offline one) to get down to 3.
        assert_eq!(inv.evict(now), 2);
        let left: Vec<String> = inv.snapshot().into_iter().map(|d| d.endpoint_id).collect();
        assert_eq!(
            left,
            [
                "os::00256D-online",
                "os::00256D-recent1",
                "os::00256D-recent2"
            ]
        );
        assert_eq!(inv.evict(now), 0);
    }

    #[test]
    fn fleet_matches_the_overview_across_chunks() {
        let inv = Inventory::load(&InventoryConfig::default()).unwrap();
        let now = crate::now_ms();
        let n = FLEET_CHUNK * 2 + 7;
        for i in 0..n {
            let eid = format!("os::00256D-{i:05}");
            if i % 3 == 0 {
                inv.on_presence(&PresenceEvent {
                    endpoint_id: eid,
                    state: PresenceState::Connected,
                    reason: "connect".into(),
                    mqtt_version: "5".into(),
                    client_id: format!("c{i}"),
                    remote_addr: None,
                    at: rfc3339_millis(now),
                    at_ms: now,
                });
            } else {
                inv.touch(&eid, now, Some("5"));
            }
        }
        let fleet = inv.fleet();
        let overview = inv.snapshot();
        assert_eq!(fleet.len(), overview.len());
        assert_eq!(fleet.len(), n);
        for (f, d) in fleet.iter().zip(&overview) {
            assert_eq!(f.endpoint_id, d.endpoint_id);
            assert_eq!(
                (f.online, f.stale, f.last_seen_ms),
                (d.online, d.stale, d.last_seen_ms)
            );
        }
    }
}
