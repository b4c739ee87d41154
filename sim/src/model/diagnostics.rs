//! Results of the asynchronous commands (IPPing, NeighboringWiFiDiagnostic,
//! SelfTestDiagnostics), shaped by the agent's faults.

use std::collections::BTreeMap;

use rand::Rng;
use tokio::time::Instant;
use uspwatch_proto::builder;

use super::{Agent, AsyncOp, Out, REQUEST_TABLE};
use crate::config::Scenario;

type Failure = (u32, String);

impl Agent {
    /// Finishes an asynchronous command with an OperationComplete Notify.
    pub(super) fn complete_operation(&mut self, now: Instant, op: AsyncOp) -> Vec<Out> {
        self.tree
            .remove_object(&format!("{REQUEST_TABLE}{}.", op.instance));
        let result = match op.command_name {
            "IPPing()" => self.ipping_result(&op.input_args),
            "NeighboringWiFiDiagnostic()" => Ok(self.neighbours_result()),
            _ => Ok(self.self_test_result()),
        };
        let path = format!("{}{}", op.obj_path, op.command_name);
        self.emit(now, "OperationComplete", &path, |msg_id, sub, send_resp| {
            builder::operation_complete(
                msg_id,
                sub,
                send_resp,
                op.obj_path,
                op.command_name,
                &op.command_key,
                result.clone(),
            )
        })
    }

    fn ipping_result(
        &mut self,
        args: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, Failure> {
        let reps: u32 = args
            .get("NumberOfRepetitions")
            .and_then(|v| v.parse().ok())
            .unwrap_or(5)
            .clamp(1, 100);
        let failures = if self.fault_active(Scenario::DiagFailure) {
            if self.rng.random_bool(0.3) {
                return Err((7022, "Error_NoRouteToHost".into()));
            }
            self.rng.random_range(reps.div_ceil(5) * 3..=reps).min(reps)
        } else {
            0
        };
        let ok = reps - failures;
        let (avg, min, max) = if ok > 0 {
            let avg: u32 = self.rng.random_range(5..=30);
            (avg, avg.saturating_sub(3).max(1), avg + 7)
        } else {
            (0, 0, 0)
        };
        Ok(BTreeMap::from([
            ("Status".into(), "Complete".into()),
            (
                "IPAddressUsed".into(),
                format!("198.51.100.{}", self.index % 250 + 1),
            ),
            ("SuccessCount".into(), ok.to_string()),
            ("FailureCount".into(), failures.to_string()),
            ("AverageResponseTime".into(), avg.to_string()),
            ("MinimumResponseTime".into(), min.to_string()),
            ("MaximumResponseTime".into(), max.to_string()),
        ]))
    }

    fn neighbours_result(&mut self) -> BTreeMap<String, String> {
        let channel = self
            .tree
            .get("Device.WiFi.Radio.1.Channel")
            .unwrap_or("1")
            .to_string();
        let noise = self
            .tree
            .get("Device.WiFi.Radio.1.Stats.Noise")
            .unwrap_or("-90")
            .to_string();
        let crowded = self.fault_active(Scenario::WifiInterference);
        let mut out = BTreeMap::from([
            ("Status".to_string(), "Complete".to_string()),
            ("ResultNumberOfEntries".to_string(), "3".to_string()),
        ]);
        for i in 1..=3u32 {
            let (ch, signal) = if crowded {
                (channel.clone(), self.rng.random_range(-50..=-35))
            } else {
                let other = ["1", "6", "11"][(i as usize) % 3].to_string();
                (other, self.rng.random_range(-90..=-70))
            };
            let r = format!("Result.{i}.");
            out.insert(format!("{r}SSID"), format!("neighbour-{i}"));
            out.insert(format!("{r}BSSID"), format!("02:11:22:33:44:{i:02x}"));
            out.insert(format!("{r}Channel"), ch);
            out.insert(format!("{r}SignalStrength"), signal.to_string());
            out.insert(format!("{r}Noise"), noise.clone());
        }
        out
    }

    fn self_test_result(&self) -> BTreeMap<String, String> {
        let issues: Vec<&str> = [
            (Scenario::RebootLoop, "watchdog: repeated resets"),
            (Scenario::MemoryLeak, "memory: low free memory"),
            (Scenario::Overheating, "thermal: over temperature"),
        ]
        .into_iter()
        .filter(|(s, _)| self.fault_active(*s))
        .map(|(_, m)| m)
        .collect();
        let results = if issues.is_empty() {
            "all tests passed".to_string()
        } else {
            issues.join("; ")
        };
        BTreeMap::from([
            ("Status".to_string(), "Complete".to_string()),
            ("Results".to_string(), results),
        ])
    }
}
