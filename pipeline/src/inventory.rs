//! Inventory and presence: what we know about each device, from the inventory file
//! (static labels), presence events (connect/disconnect) and its notifications (Boot!,
//! OnBoardRequest, values).

mod file;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;
use uspwatch_proto::time::millis;
use uspwatch_proto::{Event, EventKind, PresenceEvent, PresenceState, rfc3339_millis};

use crate::config::InventoryConfig;
use crate::error::Result;

pub(crate) use file::Labels;

/// Shared, cheaply cloned view of the fleet.
#[derive(Clone)]
pub struct Inventory {
    cfg: Arc<InventoryConfig>,
    state: Arc<RwLock<State>>,
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
    last_seen_ms: Option<i64>,
    mqtt_version: Option<String>,
    client_id: Option<String>,
    remote_addr: Option<String>,
    last_disconnect_reason: Option<String>,
    boot: Option<BootInfo>,
    onboard: Option<OnBoardInfo>,
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

/// The newest value of the parameter whose path ends with `suffix`, else its Boot! value.
fn param(d: &DeviceState, suffix: &str) -> Option<String> {
    d.latest
        .iter()
        .find(|(k, _)| k.ends_with(suffix))
        .map(|(_, v)| v.value.clone())
        .or_else(|| {
            d.boot.as_ref().and_then(|b| {
                b.parameters
                    .iter()
                    .find(|(k, _)| k.ends_with(suffix))
                    .map(|(_, v)| v.clone())
            })
        })
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
    pub last_boot: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The last `Device.Boot!` event.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    /// Loads the inventory file, if configured.
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
        })
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
                        software_version: param(d, "DeviceInfo.SoftwareVersion"),
                        model_name: param(d, "DeviceInfo.ModelName"),
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
                last_boot: None,
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
            software_version: param(d, "DeviceInfo.SoftwareVersion"),
            model_name: param(d, "DeviceInfo.ModelName"),
            last_boot: d.boot.as_ref().map(|b| b.at.clone()),
            labels,
        }
    }

    pub(crate) fn on_presence(&self, p: &PresenceEvent) {
        let mut st = self.state.write();
        let d = st.devices.entry(p.endpoint_id.clone()).or_default();
        match p.state {
            PresenceState::Connected => {
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
        let mut st = self.state.write();
        let Some(d) = device_mut(&mut st.devices, endpoint_id) else {
            return;
        };
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
        let mut st = self.state.write();
        if let Some(d) = st.devices.get_mut(endpoint_id) {
            d.online = false;
            d.connected_since_ms = None;
            d.last_disconnect_reason = Some(reason.to_string());
        }
    }

    pub(crate) fn on_event(&self, e: &Arc<Event>) {
        let (max_values, max_recent) = (self.cfg.max_values_per_device, self.cfg.recent_events);
        let mut st = self.state.write();
        let Some(d) = device_mut(&mut st.devices, &e.endpoint_id) else {
            return;
        };
        match e.kind {
            EventKind::ValueChange => {
                if let Some(v) = &e.value {
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
                d.boot = Some(boot_info(e));
            }
            EventKind::OnBoardRequest => {
                let arg = |k: &str| e.args.get(k).cloned().unwrap_or_default();
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
        d.recent.push_back(e.clone());
        while d.recent.len() > max_recent {
            d.recent.pop_front();
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
