//! The factory-default TR-181 tree of a simulated agent, including the persistent
//! Subscriptions for the uspwatch Controller that the default rule pack relies on.

use rand::Rng;

use super::{Params, SUB_TABLE};
use crate::faults::{MEMORY_TOTAL, ranges};
use crate::status::Wan;
use crate::tree::Tree;

/// Subscription IDs and what they cover.
pub(crate) const SUB_VALUE_CHANGE: &str = "uspwatch-vc";
pub(crate) const SUB_BOOT: &str = "uspwatch-boot";
pub(crate) const SUB_PERIODIC: &str = "uspwatch-periodic";
pub(crate) const SUB_OPERATION: &str = "uspwatch-oper";

/// Parameters the ValueChange subscription watches.
pub(crate) const WATCHED: [&str; 8] = [
    "Device.WiFi.Radio.1.Stats.Noise",
    "Device.WiFi.Radio.1.Channel",
    "Device.IP.Interface.1.Status",
    "Device.DeviceInfo.MemoryStatus.Free",
    "Device.DeviceInfo.ProcessStatus.CPUUsage",
    "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value",
    "Device.DSL.Line.1.DownstreamNoiseMargin",
    "Device.Optical.Interface.1.OpticalSignalLevel",
];

pub(super) fn tree(p: &Params, eid: &str, index: usize, wan: Wan, rng: &mut impl Rng) -> Tree {
    let mut t = Tree::default();
    let mut set = |k: &str, v: String| {
        t.set(k, v);
    };
    let model = match wan {
        Wan::Dsl => "SimGateway-DSL",
        Wan::Pon => "SimGateway-PON",
    };
    let di = "Device.DeviceInfo.";
    set(&format!("{di}Manufacturer"), "uspwatch".into());
    set(&format!("{di}ManufacturerOUI"), "00256D".into());
    set(&format!("{di}ModelName"), model.into());
    set(&format!("{di}ProductClass"), "SimGateway".into());
    set(&format!("{di}SerialNumber"), format!("SIM{index:06}"));
    set(&format!("{di}HardwareVersion"), "A1".into());
    set(&format!("{di}SoftwareVersion"), "1.4.2".into());
    set(&format!("{di}UpTime"), "0".into());
    set(&format!("{di}MemoryStatus.Total"), MEMORY_TOTAL.to_string());
    let free = rng.random_range(ranges::FREE);
    set(&format!("{di}MemoryStatus.Free"), free.to_string());
    let cpu = rng.random_range(ranges::CPU);
    set(&format!("{di}ProcessStatus.CPUUsage"), cpu.to_string());
    set(
        &format!("{di}TemperatureStatus.TemperatureSensorNumberOfEntries"),
        "1".into(),
    );
    let ts = format!("{di}TemperatureStatus.TemperatureSensor.1.");
    set(&format!("{ts}Name"), "CPU".into());
    set(&format!("{ts}Status"), "Enabled".into());
    let temp = rng.random_range(ranges::TEMP);
    set(&format!("{ts}Value"), temp.to_string());

    set("Device.WiFi.RadioNumberOfEntries", "1".into());
    let radio = "Device.WiFi.Radio.1.";
    set(&format!("{radio}Status"), "Up".into());
    set(&format!("{radio}OperatingFrequencyBand"), "2.4GHz".into());
    let channel = [1, 6, 11][rng.random_range(0..3)];
    set(&format!("{radio}Channel"), channel.to_string());
    let noise = rng.random_range(ranges::NOISE);
    set(&format!("{radio}Stats.Noise"), noise.to_string());
    set("Device.WiFi.AccessPointNumberOfEntries", "1".into());
    let ap = "Device.WiFi.AccessPoint.1.";
    set(&format!("{ap}Status"), "Enabled".into());
    set(&format!("{ap}AssociatedDeviceNumberOfEntries"), "1".into());
    set(
        &format!("{ap}AssociatedDevice.1.MACAddress"),
        format!(
            "02:00:00:{:02x}:{:02x}:{:02x}",
            (index >> 16) & 0xff,
            (index >> 8) & 0xff,
            index & 0xff
        ),
    );
    let signal = rng.random_range(ranges::SIGNAL);
    set(
        &format!("{ap}AssociatedDevice.1.SignalStrength"),
        signal.to_string(),
    );

    set("Device.IP.InterfaceNumberOfEntries", "1".into());
    set("Device.IP.Interface.1.Name", "wan".into());
    set("Device.IP.Interface.1.Status", "Up".into());
    match wan {
        Wan::Dsl => {
            set("Device.DSL.LineNumberOfEntries", "1".into());
            set("Device.DSL.Line.1.Status", "Up".into());
            let m = rng.random_range(ranges::DSL_MARGIN);
            set("Device.DSL.Line.1.DownstreamNoiseMargin", m.to_string());
        }
        Wan::Pon => {
            set("Device.Optical.InterfaceNumberOfEntries", "1".into());
            set("Device.Optical.Interface.1.Status", "Up".into());
            let rx = rng.random_range(ranges::PON_RX);
            set(
                "Device.Optical.Interface.1.OpticalSignalLevel",
                rx.to_string(),
            );
            set(
                "Device.Optical.Interface.1.LowerOpticalThreshold",
                "-28000".into(),
            );
        }
    }

    let la = "Device.LocalAgent.";
    set(&format!("{la}EndpointID"), eid.to_string());
    set(&format!("{la}SupportedProtocols"), "MQTT".into());
    set(&format!("{la}ControllerNumberOfEntries"), "1".into());
    let c = format!("{la}Controller.1.");
    set(&format!("{c}EndpointID"), p.controller_eid.clone());
    set(&format!("{c}Enable"), "true".into());
    let secs = |d: std::time::Duration| d.as_secs().max(1).to_string();
    set(
        &format!("{c}PeriodicNotifInterval"),
        secs(p.periodic_interval),
    );
    set(
        &format!("{c}USPNotifRetryMinimumWaitInterval"),
        secs(p.retry_min_wait),
    );
    set(
        &format!("{c}USPNotifRetryIntervalMultiplier"),
        "2000".into(),
    );
    set(&format!("{c}MTP.1.Protocol"), "MQTT".into());
    set(
        &format!("{c}MTP.1.MQTT.Topic"),
        format!("{}/{}", p.controller_prefix, p.controller_eid),
    );

    let subs = [
        (SUB_VALUE_CHANGE, "ValueChange", WATCHED.join(",")),
        (SUB_BOOT, "Event", "Device.Boot!".to_string()),
        (
            SUB_PERIODIC,
            "Event",
            "Device.LocalAgent.Periodic!".to_string(),
        ),
        (SUB_OPERATION, "OperationComplete", "Device.".to_string()),
    ];
    set(
        &format!("{la}SubscriptionNumberOfEntries"),
        subs.len().to_string(),
    );
    for (i, (id, kind, refs)) in subs.into_iter().enumerate() {
        let s = format!("{SUB_TABLE}{}.", i + 1);
        set(&format!("{s}Enable"), "true".into());
        set(&format!("{s}ID"), id.into());
        set(
            &format!("{s}Recipient"),
            "Device.LocalAgent.Controller.1.".into(),
        );
        set(&format!("{s}NotifType"), kind.into());
        set(&format!("{s}ReferenceList"), refs);
        set(&format!("{s}Persistent"), "true".into());
        set(&format!("{s}NotifRetry"), "true".into());
        set(&format!("{s}NotifExpiration"), "0".into());
        set(&format!("{s}TimeToLive"), "0".into());
    }
    t
}
