//! The four [`Source`]s behind `events`, `latest`, `devices` and `commands`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DfResult};
use parking_lot::Mutex;

use super::exec::{Pruner, Source};
use super::ring::Ring;
use super::schema;
use crate::model::{ActionRecord, Device};
use crate::udf::ParamCell;

fn arrow_err(e: arrow::error::ArrowError) -> DataFusionError {
    DataFusionError::ArrowError(Box::new(e), None)
}

fn ts_builder() -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::new().with_timezone(schema::TZ)
}

/// `events`: the window `[window_start_ms, now_ms]` of the rule being run.
#[derive(Debug)]
pub(crate) struct EventsSource {
    pub ring: Arc<Mutex<Ring>>,
    pub params: ParamCell,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ring({} rows)", self.rows())
    }
}

impl Source for EventsSource {
    fn schema(&self) -> SchemaRef {
        schema::events_schema()
    }

    fn batches(&self, pruner: Option<&Pruner>) -> DfResult<Vec<RecordBatch>> {
        let (from, to) = {
            let p = self.params.lock();
            (p.window_start_ms, p.now_ms)
        };
        let picked = {
            let ring = self.ring.lock();
            let mut picked = Vec::new();
            for (id, part) in ring.parts.iter().enumerate() {
                if pruner.is_none_or(|p| p.keep(id, &part.key)) {
                    picked.extend(ring.window(id, from, to));
                }
            }
            picked
        };
        // Clipping boundary segments copies rows: done outside the lock so ingest goes on.
        picked
            .into_iter()
            .map(|s| s.clip(from, to).map_err(arrow_err))
            .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
            .collect()
    }
}

/// `latest`: rebuilt from the ring's per-partition maps when anything was ingested.
#[derive(Debug)]
pub(crate) struct LatestSource {
    pub ring: Arc<Mutex<Ring>>,
    pub cache: Mutex<Option<(u64, RecordBatch)>>,
}

impl Source for LatestSource {
    fn schema(&self) -> SchemaRef {
        schema::latest_schema()
    }

    fn batches(&self, _pruner: Option<&Pruner>) -> DfResult<Vec<RecordBatch>> {
        let ring = self.ring.lock();
        let mut cache = self.cache.lock();
        if let Some((g, b)) = cache.as_ref()
            && *g == ring.generation
        {
            return Ok(vec![b.clone()]);
        }
        let (mut eid, mut kind, mut path, mut name, mut value) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut vf, mut ms, mut ts) = (Float64Builder::new(), Int64Builder::new(), ts_builder());
        for part in &ring.parts {
            let key = |c: usize| {
                use arrow::array::{Array, StringArray};
                part.key
                    .column(c)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .filter(|a| a.len() == 1 && a.is_valid(0))
                    .map(|a| a.value(0).to_string())
            };
            let (Some(k), Some(p)) = (key(0), key(1)) else {
                continue;
            };
            let n = key(2);
            for (e, l) in &part.latest {
                eid.append_value(e);
                kind.append_value(&k);
                path.append_value(&p);
                name.append_option(n.as_deref());
                value.append_option(l.value.as_deref());
                vf.append_option(l.value_f64);
                ms.append_value(l.ts_ms);
                ts.append_value(l.ts_ms);
            }
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(eid.finish()),
            Arc::new(kind.finish()),
            Arc::new(path.finish()),
            Arc::new(name.finish()),
            Arc::new(value.finish()),
            Arc::new(vf.finish()),
            Arc::new(ms.finish()),
            Arc::new(ts.finish()),
        ];
        let batch = RecordBatch::try_new(schema::latest_schema(), cols).map_err(arrow_err)?;
        *cache = Some((ring.generation, batch.clone()));
        Ok(vec![batch])
    }
}

/// Device inventory: set by the binary, or (tests, replay) made up from the endpoints seen.
#[derive(Debug, Default)]
pub(crate) struct DeviceState {
    pub explicit: Option<Vec<Device>>,
    pub generation: u64,
    cache: Option<(u64, u64, RecordBatch)>,
}

impl DeviceState {
    pub fn set(&mut self, devices: Vec<Device>) {
        self.explicit = Some(devices);
        self.generation += 1;
    }
}

/// Every endpoint the ring has seen, with the time of its newest event, as online devices.
pub(crate) fn synthesised_devices(ring: &Ring) -> Vec<Device> {
    let mut seen: HashMap<&str, i64> = HashMap::new();
    for part in &ring.parts {
        for (e, l) in &part.latest {
            let t = seen.entry(e).or_insert(l.ts_ms);
            *t = (*t).max(l.ts_ms);
        }
    }
    let mut v: Vec<Device> = seen
        .into_iter()
        .map(|(e, t)| Device {
            endpoint_id: e.to_string(),
            online: true,
            stale: false,
            last_seen_ms: t,
            ..Device::default()
        })
        .collect();
    v.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
    v
}

#[derive(Debug)]
pub(crate) struct DevicesSource {
    pub ring: Arc<Mutex<Ring>>,
    pub state: Arc<Mutex<DeviceState>>,
}

impl Source for DevicesSource {
    fn schema(&self) -> SchemaRef {
        schema::devices_schema()
    }

    fn batches(&self, _pruner: Option<&Pruner>) -> DfResult<Vec<RecordBatch>> {
        let mut st = self.state.lock();
        let ring_gen = if st.explicit.is_some() {
            0
        } else {
            self.ring.lock().generation
        };
        if let Some((g, rg, b)) = &st.cache
            && *g == st.generation
            && *rg == ring_gen
        {
            return Ok(vec![b.clone()]);
        }
        let made;
        let devices = match &st.explicit {
            Some(d) => d,
            None => {
                made = synthesised_devices(&self.ring.lock());
                &made
            }
        };
        let batch = devices_batch(devices).map_err(arrow_err)?;
        let g = st.generation;
        st.cache = Some((g, ring_gen, batch.clone()));
        Ok(vec![batch])
    }
}

fn devices_batch(devices: &[Device]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut eid = StringBuilder::new();
    let (mut online, mut stale) = (BooleanBuilder::new(), BooleanBuilder::new());
    let (mut ms, mut ts) = (Int64Builder::new(), ts_builder());
    let mut labels = schema::map_builder();
    let (mut sw, mut model) = (StringBuilder::new(), StringBuilder::new());
    for d in devices {
        eid.append_value(&d.endpoint_id);
        online.append_value(d.online);
        stale.append_value(d.stale);
        ms.append_value(d.last_seen_ms);
        ts.append_value(d.last_seen_ms);
        for (k, v) in &d.labels {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        labels.append(true)?;
        sw.append_option(d.software_version.as_deref());
        model.append_option(d.model.as_deref());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(eid.finish()),
        Arc::new(online.finish()),
        Arc::new(stale.finish()),
        Arc::new(ms.finish()),
        Arc::new(ts.finish()),
        Arc::new(labels.finish()),
        Arc::new(sw.finish()),
        Arc::new(model.finish()),
    ];
    RecordBatch::try_new(schema::devices_schema(), cols)
}

/// The recent actions behind `commands`.
#[derive(Debug, Default)]
pub(crate) struct CommandLog {
    pub records: VecDeque<ActionRecord>,
    pub cap: usize,
    generation: u64,
    cache: Option<(u64, RecordBatch)>,
}

impl CommandLog {
    pub fn new(cap: usize) -> Self {
        CommandLog {
            cap,
            ..CommandLog::default()
        }
    }

    /// Adds a record, or replaces the one with the same `action_id` (outcome, verification).
    pub fn upsert(&mut self, r: &ActionRecord) {
        self.generation += 1;
        if let Some(x) = self
            .records
            .iter_mut()
            .rev()
            .take(4096)
            .find(|x| x.action_id == r.action_id)
        {
            *x = r.clone();
            return;
        }
        self.records.push_back(r.clone());
        while self.records.len() > self.cap {
            self.records.pop_front();
        }
    }
}

#[derive(Debug)]
pub(crate) struct CommandsSource {
    pub log: Arc<Mutex<CommandLog>>,
}

impl Source for CommandsSource {
    fn schema(&self) -> SchemaRef {
        schema::commands_schema()
    }

    fn batches(&self, _pruner: Option<&Pruner>) -> DfResult<Vec<RecordBatch>> {
        let mut log = self.log.lock();
        if let Some((g, b)) = &log.cache
            && *g == log.generation
        {
            return Ok(vec![b.clone()]);
        }
        let mut s: Vec<StringBuilder> = (0..12).map(|_| StringBuilder::new()).collect();
        let (mut ms, mut ts) = (Int64Builder::new(), ts_builder());
        for r in &log.records {
            s[0].append_value(&r.action_id);
            s[1].append_value(&r.rule);
            s[2].append_value(&r.endpoint_id);
            s[3].append_value(&r.fingerprint);
            s[4].append_value(r.command.kind());
            s[5].append_value(serde_json::to_string(&r.command).unwrap_or_default());
            s[6].append_option(match &r.command {
                uspwatch_proto::Command::Operate { command_key, .. } => Some(command_key.as_str()),
                _ => None,
            });
            s[7].append_value(&r.mode);
            s[8].append_value(r.status.as_str());
            s[9].append_option(r.reason.as_deref());
            s[10].append_option(r.response.as_ref().map(|v| v.to_string()));
            s[11].append_option(r.verify.map(|v| v.as_str()));
            ms.append_value(r.at_ms);
            ts.append_value(r.at_ms);
        }
        let mut cols: Vec<ArrayRef> = s
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        cols.push(Arc::new(ms.finish()));
        cols.push(Arc::new(ts.finish()));
        let batch = RecordBatch::try_new(schema::commands_schema(), cols).map_err(arrow_err)?;
        log.cache = Some((log.generation, batch.clone()));
        Ok(vec![batch])
    }
}
