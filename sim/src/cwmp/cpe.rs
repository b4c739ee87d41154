//! One simulated CWMP CPE: its parameters, faults and pending events, and the session it runs
//! with the ACS (Inform, then the ACS's RPCs until `204`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use uspwatch_cwmp::{
    Body, DeviceId, Envelope, EventStruct, Fault, Header, Inform, Limits, ParameterValue, SpvFault,
    Version,
};

use super::http::Client;
use super::{CpeStatus, CwmpFleetConfig};
use crate::config::Scenario;
use crate::faults::{self, jitter, ranges};

/// RPCs the ACS may send in one session before the CPE gives up on it.
const MAX_RPCS_PER_SESSION: usize = 32;

/// Parameters reported with every Inform (the forced-inform set plus the sampled values).
const SAMPLED: [&str; 4] = [
    "Device.WiFi.Radio.1.Stats.Noise",
    "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value",
    "Device.DeviceInfo.ProcessStatus.CPUUsage",
    "Device.DeviceInfo.MemoryStatus.Free",
];

struct ActiveFault {
    scenario: Scenario,
    onset: Duration,
    cleared: bool,
}

/// What the session asked the CPE to do once it ends.
#[derive(Default)]
pub(crate) struct After {
    pub(crate) reboot: Option<String>,
    pub(crate) diagnostics: bool,
}

pub(crate) struct Cpe {
    pub(crate) index: usize,
    pub(crate) eid: String,
    device: DeviceId,
    params: BTreeMap<String, (String, &'static str)>,
    faults: Vec<ActiveFault>,
    rng: SmallRng,
    pub(crate) events: Vec<EventStruct>,
    retry_count: u32,
    start: Instant,
    pub(crate) status: Arc<Mutex<CpeStatus>>,
    id_seq: u64,
}

impl Cpe {
    pub(crate) fn new(
        cfg: &CwmpFleetConfig,
        index: usize,
        faults: &[(Scenario, Duration)],
        cr_url: String,
        start: Instant,
    ) -> Cpe {
        let serial = format!("CWMP{index:06}");
        let device = DeviceId {
            manufacturer: "uspwatch-sim".into(),
            oui: cfg.oui.clone(),
            product_class: cfg.product_class.clone(),
            serial_number: serial.clone(),
        };
        let eid = uspwatch_cwmp::endpoint_id(&device, uspwatch_cwmp::IdScheme::Os)
            .unwrap_or_else(|_| format!("os::{}-{serial}", cfg.oui));
        let mut params = BTreeMap::new();
        let mut put = |k: &str, v: &str, t: &'static str| {
            params.insert(k.to_string(), (v.to_string(), t));
        };
        put("Device.RootDataModelVersion", "2.19", "xsd:string");
        put(
            "Device.DeviceInfo.SoftwareVersion",
            "1.0.0-sim",
            "xsd:string",
        );
        put("Device.DeviceInfo.ModelName", "SimGateway", "xsd:string");
        put("Device.DeviceInfo.HardwareVersion", "SIM-1", "xsd:string");
        put("Device.DeviceInfo.UpTime", "0", "xsd:unsignedInt");
        put(
            "Device.ManagementServer.ConnectionRequestURL",
            &cr_url,
            "xsd:string",
        );
        put("Device.ManagementServer.ParameterKey", "", "xsd:string");
        put("Device.WiFi.Radio.1.Channel", "1", "xsd:unsignedInt");
        put("Device.IP.Diagnostics.IPPing.Host", "", "xsd:string");
        put(
            "Device.IP.Diagnostics.IPPing.NumberOfRepetitions",
            "5",
            "xsd:unsignedInt",
        );
        put(
            "Device.IP.Diagnostics.IPPing.DiagnosticsState",
            "None",
            "xsd:string",
        );
        put(
            "Device.IP.Diagnostics.IPPing.SuccessCount",
            "0",
            "xsd:unsignedInt",
        );
        put(
            "Device.IP.Diagnostics.IPPing.FailureCount",
            "0",
            "xsd:unsignedInt",
        );
        put(
            "Device.SelfTestDiagnostics.DiagnosticsState",
            "None",
            "xsd:string",
        );
        for p in SAMPLED {
            put(p, "0", "xsd:int");
        }
        let status = Arc::new(Mutex::new(CpeStatus {
            endpoint_id: eid.clone(),
            ..CpeStatus::default()
        }));
        let mut cpe = Cpe {
            index,
            eid,
            device,
            params,
            faults: faults
                .iter()
                .map(|(scenario, onset)| ActiveFault {
                    scenario: *scenario,
                    onset: *onset,
                    cleared: false,
                })
                .collect(),
            rng: SmallRng::seed_from_u64(cfg.seed ^ index as u64),
            events: vec![
                EventStruct {
                    code: "0 BOOTSTRAP".into(),
                    command_key: String::new(),
                },
                EventStruct {
                    code: "1 BOOT".into(),
                    command_key: String::new(),
                },
            ],
            retry_count: 0,
            start,
            status,
            id_seq: 0,
        };
        cpe.sample(start);
        cpe
    }

    pub(crate) fn fault_active(&self, s: Scenario) -> bool {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        self.faults
            .iter()
            .any(|f| f.scenario == s && !f.cleared && elapsed >= f.onset)
    }

    fn int(&self, path: &str) -> Option<i64> {
        self.params.get(path).and_then(|(v, _)| v.parse().ok())
    }

    fn set(&mut self, path: &str, v: String) {
        if let Some(p) = self.params.get_mut(path) {
            p.0 = v;
        }
    }

    /// New sample values; whether any changed (a `4 VALUE CHANGE` is due).
    pub(crate) fn sample(&mut self, now: Instant) -> bool {
        let uptime = now.saturating_duration_since(self.start).as_secs();
        self.set("Device.DeviceInfo.UpTime", uptime.to_string());
        let mut changed = false;
        for (path, normal, faulty, scenario) in [
            (
                SAMPLED[0],
                ranges::NOISE,
                ranges::NOISE_INTERFERENCE,
                Scenario::WifiInterference,
            ),
            (
                SAMPLED[1],
                ranges::TEMP,
                ranges::TEMP_HOT,
                Scenario::Overheating,
            ),
            (
                SAMPLED[2],
                ranges::CPU,
                ranges::CPU_LEAK,
                Scenario::MemoryLeak,
            ),
        ] {
            let range = if self.fault_active(scenario) {
                faulty
            } else {
                normal
            };
            let prev = self.int(path);
            let v = jitter(&mut self.rng, range, prev);
            changed |= Some(v) != prev;
            self.set(path, v.to_string());
        }
        let prev_free = self.int(SAMPLED[3]).filter(|v| *v > 0).unwrap_or(250_000);
        let free = if self.fault_active(Scenario::MemoryLeak) {
            faults::leak_step(&mut self.rng, prev_free)
        } else {
            jitter(&mut self.rng, ranges::FREE, Some(prev_free))
        };
        self.set(SAMPLED[3], free.to_string());
        changed
    }

    pub(crate) fn add_event(&mut self, code: &str, command_key: &str) {
        if !self.events.iter().any(|e| e.code == code) {
            self.events.push(EventStruct {
                code: code.into(),
                command_key: command_key.into(),
            });
        }
    }

    fn inform(&self) -> Inform {
        let mut names: Vec<&str> = vec![
            "Device.RootDataModelVersion",
            "Device.DeviceInfo.SoftwareVersion",
            "Device.DeviceInfo.ModelName",
            "Device.DeviceInfo.HardwareVersion",
            "Device.DeviceInfo.UpTime",
            "Device.ManagementServer.ConnectionRequestURL",
            "Device.ManagementServer.ParameterKey",
            "Device.WiFi.Radio.1.Channel",
        ];
        names.extend(SAMPLED);
        if self
            .events
            .iter()
            .any(|e| e.code == "8 DIAGNOSTICS COMPLETE")
        {
            names.extend([
                "Device.IP.Diagnostics.IPPing.DiagnosticsState",
                "Device.IP.Diagnostics.IPPing.SuccessCount",
                "Device.IP.Diagnostics.IPPing.FailureCount",
            ]);
        }
        Inform {
            device_id: self.device.clone(),
            events: self.events.clone(),
            max_envelopes: 1,
            current_time: uspwatch_proto::rfc3339_millis(super::wall_ms()),
            retry_count: self.retry_count,
            parameters: names.into_iter().filter_map(|n| self.value(n)).collect(),
        }
    }

    fn value(&self, name: &str) -> Option<ParameterValue> {
        self.params.get(name).map(|(v, t)| ParameterValue {
            name: name.to_string(),
            value: v.clone(),
            xsi_type: t.to_string(),
        })
    }

    fn envelope(&mut self, id: Option<String>, body: Body) -> String {
        let id = id.or_else(|| {
            self.id_seq += 1;
            Some(format!("cpe-{}", self.id_seq))
        });
        uspwatch_cwmp::write(&Envelope {
            version: Version::V1_2,
            header: Header {
                id,
                ..Header::default()
            },
            body,
        })
    }

    /// Runs one session; what to do after it. On an error the events stay pending and
    /// `RetryCount` grows, as TR-069 §3.2.1.1 asks.
    pub(crate) async fn session(
        &mut self,
        client: &mut Client,
        authorization: Option<&str>,
    ) -> Result<After, String> {
        client.close();
        let inform = self.inform();
        let text = self.envelope(None, Body::Inform(inform));
        let r = client
            .post(&text, None, authorization)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            self.retry_count += 1;
            self.status.lock().failed_sessions += 1;
            return Err(format!("Inform answered with HTTP {}", r.status));
        }
        match uspwatch_cwmp::parse(&r.body, &Limits::default()) {
            Ok(Some(Envelope {
                body: Body::InformResponse { .. },
                ..
            })) => {}
            other => {
                self.retry_count += 1;
                return Err(format!("unexpected answer to Inform: {other:?}"));
            }
        }
        self.retry_count = 0;
        {
            let mut st = self.status.lock();
            st.informs += 1;
            for e in &self.events {
                *st.events_sent.entry(e.code.clone()).or_default() += 1;
            }
        }
        self.events.clear();
        let cookie = r.set_cookie;
        let mut after = After::default();
        let mut next = client
            .post("", cookie.as_deref(), None)
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..MAX_RPCS_PER_SESSION {
            if next.status == 204 {
                self.status.lock().sessions += 1;
                return Ok(after);
            }
            let env = match uspwatch_cwmp::parse(&next.body, &Limits::default()) {
                Ok(Some(env)) => env,
                other => return Err(format!("unreadable ACS request: {other:?}")),
            };
            let answer = self.handle(env.body, &mut after);
            let text = self.envelope(env.header.id, answer);
            next = client
                .post(&text, cookie.as_deref(), None)
                .await
                .map_err(|e| e.to_string())?;
        }
        Err("the ACS sent too many RPCs in one session".into())
    }

    fn handle(&mut self, body: Body, after: &mut After) -> Body {
        let name = body.name().to_string();
        self.status.lock().rpcs_received.push(name);
        match body {
            Body::GetParameterValues { names } => {
                let mut out = Vec::new();
                for n in &names {
                    let found: Vec<_> = self
                        .params
                        .keys()
                        .filter(|k| *k == n || (n.ends_with('.') && k.starts_with(n.as_str())))
                        .cloned()
                        .collect();
                    if found.is_empty() {
                        return Body::Fault(Fault::new(9005));
                    }
                    out.extend(found.iter().filter_map(|k| self.value(k)));
                }
                Body::GetParameterValuesResponse { parameters: out }
            }
            Body::SetParameterValues {
                parameters,
                parameter_key,
            } => {
                let unknown: Vec<SpvFault> = parameters
                    .iter()
                    .filter(|p| !self.params.contains_key(&p.name))
                    .map(|p| SpvFault {
                        parameter_name: p.name.clone(),
                        code: 9005,
                        string: "Invalid parameter name".into(),
                    })
                    .collect();
                if !unknown.is_empty() {
                    let mut f = Fault::new(9003);
                    f.set_parameter_values_faults = unknown;
                    return Body::Fault(f);
                }
                for p in parameters {
                    if p.name == "Device.WiFi.Radio.1.Channel" {
                        self.clear(Scenario::WifiInterference);
                    }
                    if p.name.ends_with(".DiagnosticsState") && p.value == "Requested" {
                        after.diagnostics = true;
                    }
                    self.set(&p.name, p.value);
                }
                self.set("Device.ManagementServer.ParameterKey", parameter_key);
                Body::SetParameterValuesResponse { status: 0 }
            }
            Body::Reboot { command_key } => {
                after.reboot = Some(command_key);
                Body::RebootResponse
            }
            _ => Body::Fault(Fault::new(9000)),
        }
    }

    fn clear(&mut self, s: Scenario) {
        let now = Instant::now().saturating_duration_since(self.start);
        for f in &mut self.faults {
            if f.scenario == s && now >= f.onset {
                f.cleared = true;
            }
        }
    }

    /// A commanded reboot: faults a reboot fixes are gone, and the next Inform says why.
    pub(crate) fn rebooted(&mut self, command_key: &str) {
        self.clear(Scenario::MemoryLeak);
        self.clear(Scenario::Silent);
        self.start_boot();
        self.add_event("M Reboot", command_key);
        self.status.lock().reboots += 1;
    }

    /// A local reboot (the reboot-loop scenario).
    pub(crate) fn start_boot(&mut self) {
        self.add_event("1 BOOT", "");
        self.set(SAMPLED[3], "250000".into());
    }

    /// The IPPing result: failures under the diag-failure scenario.
    pub(crate) fn finish_diagnostics(&mut self) {
        let failed = if self.fault_active(Scenario::DiagFailure) {
            4
        } else {
            0
        };
        self.set(
            "Device.IP.Diagnostics.IPPing.DiagnosticsState",
            "Complete".into(),
        );
        self.set(
            "Device.IP.Diagnostics.IPPing.SuccessCount",
            (5 - failed).to_string(),
        );
        self.set(
            "Device.IP.Diagnostics.IPPing.FailureCount",
            failed.to_string(),
        );
        self.set(
            "Device.SelfTestDiagnostics.DiagnosticsState",
            "Complete".into(),
        );
        self.add_event("8 DIAGNOSTICS COMPLETE", "");
    }
}
