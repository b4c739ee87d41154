//! The event window: Arrow batches partitioned by (kind, path, name) and by time.
//!
//! Partitioning by path lets a rule that filters on `path`/`kind`/`name` skip every other
//! partition without touching its rows (a fleet sends a handful of paths, so a rule usually
//! reads a tenth of the window or less). Within a partition, sealed segments are ordered by
//! arrival and carry their min/max `ts`, so a window scan takes whole segments and filters only
//! the boundary ones.
//!
//! Memory is bounded in rows and in bytes (the data of the rows: strings as appended plus a
//! fixed cost per row). Past either bound the oldest segment of the whole window is dropped
//! and counted (`evicted_rows`/`evicted_bytes`); builders seal early enough that one segment
//! is a small share of the byte budget, so an eviction never drops more than needed by much.
//! The `latest` values (one per endpoint and path) get a quarter of the byte budget; past it,
//! the oldest values are forgotten and counted (`latest_evicted`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, MapBuilder,
    RecordBatch, StringArray, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use uspwatch_proto::{Event, EventKind};

use super::schema;

/// Rows an active builder collects before it is sealed into a segment.
const SEAL_ROWS: usize = 8192;
/// Segments smaller than this are merged with the next one, so a window is made of few
/// large batches even when the engine seals every tick.
const COMPACT_ROWS: usize = 16384;
/// Share of the byte budget one active builder or sealed segment may reach (1/SEGMENT_SHARE).
const SEGMENT_SHARE: usize = 32;
/// Share of the byte budget the `latest` values may take (1/LATEST_SHARE).
const LATEST_SHARE: usize = 4;
/// Fixed bytes counted per row besides its strings (fixed-width columns and offsets).
const ROW_OVERHEAD: usize = 96;
/// Fixed bytes counted per `latest` entry besides its key and value.
const LATEST_OVERHEAD: usize = 80;
/// Distinct (kind, path, name) partitions; beyond this, events share one overflow partition
/// (correct, just not prunable).
const MAX_PARTITIONS: usize = 4096;

/// The latest value of one path on one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct LatestEntry {
    pub value: Option<String>,
    pub value_f64: Option<f64>,
    pub ts_ms: i64,
}

struct Segment {
    batch: RecordBatch,
    bytes: usize,
    min_ts: i64,
    max_ts: i64,
}

/// The bytes a row of `e` is counted for.
fn event_bytes(e: &Event) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let map = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
    };
    ROW_OVERHEAD
        + e.event_id.len()
        + e.endpoint_id.len()
        + e.controller_id.len()
        + e.msg_id.len()
        + e.subscription_id.len()
        + e.kind.as_str().len()
        + e.path.len()
        + opt(&e.name)
        + opt(&e.value)
        + map(&e.args)
        + opt(&e.command_key)
        + e.error.as_ref().map_or(0, |x| x.message.len())
        + map(&e.labels)
}

fn latest_bytes(eid: &str, l: &LatestEntry) -> usize {
    LATEST_OVERHEAD + eid.len() + l.value.as_ref().map_or(0, String::len)
}

/// One (kind, path, name) partition.
pub(crate) struct Partition {
    /// A one-row batch of the key columns, for evaluating pushed-down filters.
    pub key: RecordBatch,
    sealed: VecDeque<Segment>,
    active: Builders,
    active_bytes: usize,
    active_min: i64,
    active_max: i64,
    pub latest: HashMap<Box<str>, LatestEntry>,
}

struct Builders {
    event_id: StringBuilder,
    endpoint_id: StringBuilder,
    controller_id: StringBuilder,
    msg_id: StringBuilder,
    subscription_id: StringBuilder,
    send_resp: BooleanBuilder,
    kind: StringBuilder,
    path: StringBuilder,
    name: StringBuilder,
    value: StringBuilder,
    value_f64: Float64Builder,
    args: MapBuilder<StringBuilder, StringBuilder>,
    command_key: StringBuilder,
    error_code: UInt32Builder,
    error_message: StringBuilder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    received_at_ms: Int64Builder,
    ts: TimestampMillisecondBuilder,
    rows: usize,
}

impl Builders {
    fn new() -> Self {
        Builders {
            event_id: StringBuilder::new(),
            endpoint_id: StringBuilder::new(),
            controller_id: StringBuilder::new(),
            msg_id: StringBuilder::new(),
            subscription_id: StringBuilder::new(),
            send_resp: BooleanBuilder::new(),
            kind: StringBuilder::new(),
            path: StringBuilder::new(),
            name: StringBuilder::new(),
            value: StringBuilder::new(),
            value_f64: Float64Builder::new(),
            args: schema::map_builder(),
            command_key: StringBuilder::new(),
            error_code: UInt32Builder::new(),
            error_message: StringBuilder::new(),
            labels: schema::map_builder(),
            received_at_ms: Int64Builder::new(),
            ts: TimestampMillisecondBuilder::new().with_timezone(schema::TZ),
            rows: 0,
        }
    }

    fn append(&mut self, e: &Event) -> Result<(), ArrowError> {
        self.event_id.append_value(&e.event_id);
        self.endpoint_id.append_value(&e.endpoint_id);
        self.controller_id.append_value(&e.controller_id);
        self.msg_id.append_value(&e.msg_id);
        self.subscription_id.append_value(&e.subscription_id);
        self.send_resp.append_value(e.send_resp);
        self.kind.append_value(e.kind.as_str());
        self.path.append_value(&e.path);
        self.name.append_option(e.name.as_deref());
        self.value.append_option(e.value.as_deref());
        self.value_f64.append_option(e.value_f64());
        for (k, v) in &e.args {
            self.args.keys().append_value(k);
            self.args.values().append_value(v);
        }
        self.args.append(true)?;
        self.command_key.append_option(e.command_key.as_deref());
        self.error_code
            .append_option(e.error.as_ref().map(|x| x.code));
        self.error_message
            .append_option(e.error.as_ref().map(|x| x.message.as_str()));
        for (k, v) in &e.labels {
            self.labels.keys().append_value(k);
            self.labels.values().append_value(v);
        }
        self.labels.append(true)?;
        self.received_at_ms.append_value(e.received_at_ms);
        self.ts.append_value(e.received_at_ms);
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.endpoint_id.finish()),
            Arc::new(self.controller_id.finish()),
            Arc::new(self.msg_id.finish()),
            Arc::new(self.subscription_id.finish()),
            Arc::new(self.send_resp.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.value_f64.finish()),
            Arc::new(self.args.finish()),
            Arc::new(self.command_key.finish()),
            Arc::new(self.error_code.finish()),
            Arc::new(self.error_message.finish()),
            Arc::new(self.labels.finish()),
            Arc::new(self.received_at_ms.finish()),
            Arc::new(self.ts.finish()),
        ];
        RecordBatch::try_new(schema.clone(), cols)
    }
}

impl Partition {
    fn new(kind: &str, path: &str, name: Option<&str>) -> Self {
        let key = RecordBatch::try_new(
            schema::partition_key_schema(),
            vec![
                Arc::new(StringArray::from(vec![Some(kind)])),
                Arc::new(StringArray::from(vec![Some(path)])),
                Arc::new(StringArray::from(vec![name])),
            ],
        )
        .unwrap_or_else(|_| RecordBatch::new_empty(schema::partition_key_schema()));
        Partition {
            key,
            sealed: VecDeque::new(),
            active: Builders::new(),
            active_bytes: 0,
            active_min: i64::MAX,
            active_max: i64::MIN,
            latest: HashMap::new(),
        }
    }

    /// Turns the active rows into a segment (merged into the last one while both stay small).
    fn seal(&mut self, schema: &SchemaRef, max_segment_bytes: usize) -> Result<(), ArrowError> {
        if self.active.rows == 0 {
            return Ok(());
        }
        let batch = self.active.finish(schema)?;
        let (min_ts, max_ts) = (self.active_min, self.active_max);
        let bytes = std::mem::take(&mut self.active_bytes);
        self.active_min = i64::MAX;
        self.active_max = i64::MIN;
        if let Some(last) = self.sealed.back_mut()
            && last.batch.num_rows() < COMPACT_ROWS
            && last.bytes + bytes <= max_segment_bytes
        {
            last.batch = concat_batches(schema, [&last.batch, &batch])?;
            last.bytes += bytes;
            last.min_ts = last.min_ts.min(min_ts);
            last.max_ts = last.max_ts.max(max_ts);
            return Ok(());
        }
        self.sealed.push_back(Segment {
            batch,
            bytes,
            min_ts,
            max_ts,
        });
        Ok(())
    }
}

/// The retained window of events plus the latest value per (endpoint, path).
pub(crate) struct Ring {
    schema: SchemaRef,
    pub parts: Vec<Partition>,
    /// path → partition ids with that path (kind and name are checked on lookup).
    index: HashMap<Box<str>, Vec<usize>>,
    overflow: Option<usize>,
    rows: usize,
    max_rows: usize,
    /// Bytes of the rows held (sealed and active), see [`event_bytes`].
    bytes: usize,
    max_bytes: usize,
    latest_bytes: usize,
    /// Bumped on every ingest, so derived tables (`latest`, synthesised `devices`) know when
    /// to rebuild.
    pub generation: u64,
    /// Rows dropped because they aged out of the longest window.
    pub evicted: u64,
    /// Rows and bytes dropped to stay within `max_rows` / `max_bytes` (running totals).
    pub evicted_rows: u64,
    pub evicted_bytes: u64,
    /// `latest` values forgotten to stay within their share of `max_bytes` (running total).
    pub latest_evicted: u64,
    /// Not yet reported to metrics: rows dropped for the row cap, for the byte cap, and
    /// `latest` values forgotten.
    unreported: [u64; 3],
}

impl Ring {
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        Ring {
            schema: schema::events_schema(),
            parts: Vec::new(),
            index: HashMap::new(),
            overflow: None,
            rows: 0,
            max_rows,
            bytes: 0,
            max_bytes,
            latest_bytes: 0,
            generation: 0,
            evicted: 0,
            evicted_rows: 0,
            evicted_bytes: 0,
            latest_evicted: 0,
            unreported: [0; 3],
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held by the window's rows and the `latest` values.
    pub fn bytes(&self) -> usize {
        self.bytes + self.latest_bytes
    }

    /// Early evictions since the last call: rows for the row cap, rows for the byte cap,
    /// `latest` values.
    pub fn take_unreported(&mut self) -> [u64; 3] {
        std::mem::take(&mut self.unreported)
    }

    fn max_segment_bytes(&self) -> usize {
        (self.max_bytes / SEGMENT_SHARE).max(1)
    }

    fn partition_for(&mut self, kind: EventKind, path: &str, name: Option<&str>) -> usize {
        if let Some(ids) = self.index.get(path) {
            for &id in ids {
                let k = &self.parts[id].key;
                if key_str(k, 0) == Some(kind.as_str()) && key_str(k, 2) == name {
                    return id;
                }
            }
        }
        if self.parts.len() >= MAX_PARTITIONS {
            if let Some(id) = self.overflow {
                return id;
            }
            // The overflow partition's key is all nulls: no pushed-down filter can prune it.
            let id = self.parts.len();
            let mut p = Partition::new("", "", None);
            p.key = RecordBatch::new_empty(schema::partition_key_schema());
            self.parts.push(p);
            self.overflow = Some(id);
            return id;
        }
        let id = self.parts.len();
        self.parts.push(Partition::new(kind.as_str(), path, name));
        self.index.entry(path.into()).or_default().push(id);
        id
    }

    /// Appends one event. Cheap: a hash lookup and a few buffer appends.
    pub fn push(&mut self, e: &Event) -> Result<(), ArrowError> {
        let id = self.partition_for(e.kind, &e.path, e.name.as_deref());
        let schema = self.schema.clone();
        let max_segment_bytes = self.max_segment_bytes();
        let row_bytes = event_bytes(e);
        let p = &mut self.parts[id];
        p.active.append(e)?;
        p.active_bytes += row_bytes;
        let ts = e.received_at_ms;
        p.active_min = p.active_min.min(ts);
        p.active_max = p.active_max.max(ts);
        let mut latest_delta: isize = 0;
        match p.latest.get_mut(e.endpoint_id.as_str()) {
            Some(l) if l.ts_ms <= ts => {
                let old = latest_bytes(&e.endpoint_id, l);
                l.value.clone_from(&e.value);
                l.value_f64 = e.value_f64();
                l.ts_ms = ts;
                latest_delta = latest_bytes(&e.endpoint_id, l) as isize - old as isize;
            }
            Some(_) => {}
            None => {
                let l = LatestEntry {
                    value: e.value.clone(),
                    value_f64: e.value_f64(),
                    ts_ms: ts,
                };
                latest_delta = latest_bytes(&e.endpoint_id, &l) as isize;
                p.latest.insert(e.endpoint_id.as_str().into(), l);
            }
        }
        if p.active.rows >= SEAL_ROWS || p.active_bytes >= max_segment_bytes {
            p.seal(&schema, max_segment_bytes)?;
        }
        self.latest_bytes = self.latest_bytes.saturating_add_signed(latest_delta);
        self.rows += 1;
        self.bytes += row_bytes;
        self.generation += 1;
        if self.latest_bytes > self.max_bytes / LATEST_SHARE {
            self.trim_latest();
        }
        while self.rows > self.max_rows || self.bytes + self.latest_bytes > self.max_bytes {
            let bound = usize::from(self.rows <= self.max_rows);
            match self.evict_oldest()? {
                0 => break,
                n => self.unreported[bound] += n,
            }
        }
        Ok(())
    }

    /// Seals every active builder and drops segments that ended before `keep_from_ms`.
    pub fn seal_and_evict(&mut self, keep_from_ms: i64) -> Result<(), ArrowError> {
        let schema = self.schema.clone();
        let max_segment_bytes = self.max_segment_bytes();
        for p in &mut self.parts {
            p.seal(&schema, max_segment_bytes)?;
            while p.sealed.front().is_some_and(|s| s.max_ts < keep_from_ms) {
                if let Some(s) = p.sealed.pop_front() {
                    self.rows -= s.batch.num_rows();
                    self.bytes -= s.bytes;
                    self.evicted += s.batch.num_rows() as u64;
                }
            }
        }
        Ok(())
    }

    /// Drops the oldest segment of the whole ring (a row or byte cap was hit); the rows
    /// dropped, 0 when there is nothing left to drop.
    fn evict_oldest(&mut self) -> Result<u64, ArrowError> {
        let schema = self.schema.clone();
        let max_segment_bytes = self.max_segment_bytes();
        let oldest = self
            .parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.sealed.front().map(|s| (s.min_ts, i)))
            .min();
        let id = match oldest {
            Some((_, id)) => id,
            None => {
                // Nothing sealed yet: seal the largest partition and drop that.
                let Some((id, p)) = self
                    .parts
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, p)| p.active_bytes)
                else {
                    return Ok(0);
                };
                if p.active.rows == 0 {
                    return Ok(0);
                }
                self.parts[id].seal(&schema, max_segment_bytes)?;
                id
            }
        };
        let Some(s) = self.parts[id].sealed.pop_front() else {
            return Ok(0);
        };
        let rows = s.batch.num_rows() as u64;
        self.rows -= s.batch.num_rows();
        self.bytes -= s.bytes;
        self.evicted_rows += rows;
        self.evicted_bytes += s.bytes as u64;
        Ok(rows)
    }

    /// Forgets the oldest `latest` values until they take at most 90 % of their share.
    fn trim_latest(&mut self) {
        let target = self.max_bytes / LATEST_SHARE / 10 * 9;
        let mut all: Vec<(i64, usize, Box<str>)> = self
            .parts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.latest.iter().map(move |(k, l)| (l.ts_ms, i, k.clone())))
            .collect();
        all.sort_unstable();
        for (_, i, k) in all {
            if self.latest_bytes <= target {
                break;
            }
            if let Some(l) = self.parts[i].latest.remove(&k) {
                self.latest_bytes = self.latest_bytes.saturating_sub(latest_bytes(&k, &l));
                self.latest_evicted += 1;
                self.unreported[2] += 1;
            }
        }
    }

    /// Sealed rows of partition `id` with `from_ms <= ts <= to_ms`.
    pub fn window(&self, id: usize, from_ms: i64, to_ms: i64) -> Vec<Segmentish> {
        self.parts[id]
            .sealed
            .iter()
            .filter(|s| s.max_ts >= from_ms && s.min_ts <= to_ms)
            .map(|s| Segmentish {
                batch: s.batch.clone(),
                whole: s.min_ts >= from_ms && s.max_ts <= to_ms,
            })
            .collect()
    }
}

/// A segment picked for a scan: `whole` when all of it lies in the window.
pub(crate) struct Segmentish {
    pub batch: RecordBatch,
    pub whole: bool,
}

impl Segmentish {
    /// The rows of the segment inside the window.
    pub fn clip(self, from_ms: i64, to_ms: i64) -> Result<RecordBatch, ArrowError> {
        if self.whole {
            return Ok(self.batch);
        }
        let idx = self.batch.schema().index_of("received_at_ms")?;
        let ts = self
            .batch
            .column(idx)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| ArrowError::SchemaError("received_at_ms is not Int64".into()))?;
        let mask: arrow::array::BooleanArray = ts
            .iter()
            .map(|t| t.map(|t| t >= from_ms && t <= to_ms))
            .collect();
        filter_record_batch(&self.batch, &mask)
    }
}

fn key_str(key: &RecordBatch, col: usize) -> Option<&str> {
    if key.num_rows() == 0 {
        return None;
    }
    let a = key.column(col).as_any().downcast_ref::<StringArray>()?;
    if a.is_null(0) { None } else { Some(a.value(0)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(crate) fn ev(eid: &str, path: &str, value: &str, ts: i64) -> Event {
        Event {
            event_id: format!("{eid}/{ts}"),
            endpoint_id: eid.into(),
            controller_id: "self::uspwatch".into(),
            msg_id: ts.to_string(),
            subscription_id: "s".into(),
            send_resp: true,
            received_at: uspwatch_proto::rfc3339_millis(ts),
            received_at_ms: ts,
            kind: EventKind::ValueChange,
            path: path.into(),
            name: None,
            value: Some(value.into()),
            args: BTreeMap::new(),
            command_key: None,
            error: None,
            labels: BTreeMap::new(),
            protocol: None,
        }
    }

    #[test]
    fn partitions_by_path_and_evicts_by_time_and_cap() {
        let mut r = Ring::new(25, usize::MAX);
        for i in 0..10 {
            r.push(&ev("a", "Device.X", &i.to_string(), i * 1000))
                .unwrap();
            r.push(&ev("a", "Device.Y", "1", i * 1000)).unwrap();
        }
        assert_eq!(r.parts.len(), 2);
        r.seal_and_evict(0).unwrap();
        assert_eq!(r.rows(), 20);
        let segs = r.window(0, 3000, 5000);
        let rows: usize = segs
            .into_iter()
            .map(|s| s.clip(3000, 5000).unwrap().num_rows())
            .sum();
        assert_eq!(rows, 3);
        assert_eq!(r.parts[0].latest["a"].value.as_deref(), Some("9"));
        for i in 10..20 {
            r.push(&ev("a", "Device.X", "1", i * 1000)).unwrap();
        }
        assert!(r.rows() <= 25, "{}", r.rows());
        r.seal_and_evict(100_000).unwrap();
        assert_eq!(r.rows(), 0);
    }

    #[test]
    fn large_events_are_bounded_in_bytes_oldest_first() {
        let budget = 8 * 1024 * 1024;
        let mut r = Ring::new(2_000_000, budget);
        let big = "x".repeat(60_000);
        // 1,500 Notifies of ~60 KB: 90 MB of values against an 8 MiB budget.
        for i in 0..1_500 {
            let eid = format!("os::00256D-{}", i % 7);
            r.push(&ev(&eid, "Device.Big", &big, i)).unwrap();
            assert!(r.bytes() <= budget, "{} bytes after {i}", r.bytes());
        }
        assert!(r.evicted_rows > 1_000, "{}", r.evicted_rows);
        assert!(r.rows() > 50, "the newest rows stay: {}", r.rows());
        // What stays is the newest: the oldest row left is younger than every evicted one.
        r.seal_and_evict(0).unwrap();
        let oldest = r.parts[0].sealed.front().map(|s| s.min_ts).unwrap();
        assert!(oldest >= r.evicted_rows as i64, "{oldest}");
        // Real Arrow memory follows the estimate, within the builders' capacity doubling.
        let arrow: usize = r
            .parts
            .iter()
            .flat_map(|p| p.sealed.iter())
            .map(|s| s.batch.get_array_memory_size())
            .sum();
        assert!(arrow <= 3 * budget, "{arrow} bytes of Arrow buffers");
    }

    #[test]
    fn latest_values_keep_to_their_share() {
        let budget = 4 * 1024 * 1024;
        let mut r = Ring::new(2_000_000, budget);
        let big = "y".repeat(60_000);
        for i in 0..1_000 {
            r.push(&ev(&format!("os::00256D-{i}"), "Device.Big", &big, i))
                .unwrap();
        }
        assert!(r.latest_bytes <= budget / LATEST_SHARE);
        assert!(r.latest_evicted > 900, "{}", r.latest_evicted);
        assert!(r.parts[0].latest.contains_key("os::00256D-999"));
        assert!(!r.parts[0].latest.contains_key("os::00256D-0"));
    }
}
