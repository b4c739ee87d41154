//! Turning a [`RuleSpec`] into a [`CompiledRule`]: SQL planned once into a physical plan,
//! templates parsed and checked against the result columns.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use regex::Regex;

use crate::rule::{Guardrails, RuleLoadError, RuleSpec, split_action};
use crate::template::Template;

/// Template variables every rule has besides its result columns.
pub(crate) const BUILTIN_VARS: &[&str] = &["rule", "fingerprint", "severity", "alertname"];

/// A result row: column name → JSON value.
pub(crate) type Row = BTreeMap<String, serde_json::Value>;

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub spec: RuleSpec,
    pub source: String,
    pub plan: Arc<dyn ExecutionPlan>,
    pub annotations: Vec<(String, Template)>,
    pub action: Option<CompiledAction>,
}

#[derive(Debug)]
pub(crate) struct CompiledAction {
    pub guard: Guardrails,
    /// The command as JSON with `{{var}}` strings, filled per alert.
    pub command: serde_json::Value,
    pub verify: Option<Arc<dyn ExecutionPlan>>,
}

/// Plans one SQL query (read-only: no DDL, DML or SET).
pub(crate) async fn plan_sql(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    let opts = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, opts).await?;
    df.create_physical_plan().await
}

static POSITION: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"Line: (\d+), Column: (\d+)").ok());

/// The error's message and, when known, its 1-based line and column in the SQL.
fn sql_error(e: &DataFusionError) -> (String, Option<u64>, Option<u64>) {
    let message = e.strip_backtrace();
    for inner in e.iter() {
        if let Some(span) = inner.diagnostic().and_then(|d| d.span)
            && span.start.line > 0
        {
            return (message, Some(span.start.line), Some(span.start.column));
        }
    }
    if let Some(c) = POSITION.as_ref().and_then(|re| re.captures(&message)) {
        let n = |i: usize| c.get(i).and_then(|m| m.as_str().parse().ok());
        return (message.clone(), n(1), n(2));
    }
    (message, None, None)
}

fn template_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| template_strings(x, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            template_strings(x, out)
        }),
        _ => {}
    }
}

/// Fills every string (and object key) of a JSON template.
pub(crate) fn render_json(
    v: &serde_json::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> serde_json::Value {
    let fill = |s: &str| match Template::parse(s) {
        Ok(t) => t.render(lookup),
        Err(_) => s.to_string(),
    };
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(fill(s)),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(|x| render_json(x, lookup)).collect())
        }
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, x)| (fill(k), render_json(x, lookup)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Compiles one rule. Every problem names the rule; SQL problems carry their position.
pub(crate) async fn compile(
    ctx: &SessionContext,
    spec: RuleSpec,
    source: &str,
    max_window: std::time::Duration,
) -> Result<CompiledRule, RuleLoadError> {
    let fail = |message: String, line, column| RuleLoadError {
        source: source.to_string(),
        rule: spec.name.clone(),
        message,
        line,
        column,
    };
    if spec.window > max_window {
        return Err(fail(
            format!(
                "window {} is longer than the configured max_window {}",
                humantime::format_duration(spec.window),
                humantime::format_duration(max_window)
            ),
            None,
            None,
        ));
    }
    let plan = plan_sql(ctx, &spec.sql).await.map_err(|e| {
        let (m, l, c) = sql_error(&e);
        fail(m, l, c)
    })?;
    let columns: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for k in &spec.key {
        if !columns.contains(k) {
            return Err(fail(
                format!("key column {k:?} is not in the result (columns: {columns:?})"),
                None,
                None,
            ));
        }
    }
    let known = |v: &str| {
        columns.iter().any(|c| c == v) || BUILTIN_VARS.contains(&v) || spec.labels.contains_key(v)
    };
    let check = |what: &str, text: &str| -> Result<Template, RuleLoadError> {
        let t = Template::parse(text).map_err(|e| fail(format!("{what}: {e}"), None, None))?;
        if let Some(v) = t.vars().find(|v| !known(v)) {
            return Err(fail(
                format!("{what}: unknown variable {v:?} (result columns: {columns:?})"),
                None,
                None,
            ));
        }
        Ok(t)
    };
    let mut annotations = Vec::new();
    for (k, text) in &spec.annotations {
        annotations.push((k.clone(), check(&format!("annotations.{k}"), text)?));
    }
    for (k, text) in &spec.labels {
        check(&format!("labels.{k}"), text)?;
    }
    let action = match &spec.action {
        None => None,
        Some(table) => {
            let (guard, command) = split_action(table).map_err(|m| fail(m, None, None))?;
            let mut strings = Vec::new();
            template_strings(&command, &mut strings);
            for s in &strings {
                check("action", s)?;
            }
            if !columns.contains(&guard.target) {
                return Err(fail(
                    format!(
                        "action.target column {:?} is not in the result",
                        guard.target
                    ),
                    None,
                    None,
                ));
            }
            let verify = match &guard.verify {
                None => None,
                Some(sql) => Some(plan_sql(ctx, sql).await.map_err(|e| {
                    let (m, l, c) = sql_error(&e);
                    fail(format!("action.verify: {m}"), l, c)
                })?),
            };
            Some(CompiledAction {
                guard,
                command,
                verify,
            })
        }
    };
    Ok(CompiledRule {
        spec,
        source: source.to_string(),
        plan,
        annotations,
        action,
    })
}

/// Runs a planned query again over the current data.
pub(crate) async fn run(
    ctx: &SessionContext,
    plan: &Arc<dyn ExecutionPlan>,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let plan = reset_plan_states(plan.clone())?;
    datafusion::physical_plan::collect(plan, ctx.task_ctx()).await
}

/// Result batches as rows of JSON values.
pub(crate) fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        for i in 0..b.num_rows() {
            let mut row = Row::new();
            for (c, f) in schema.fields().iter().enumerate() {
                let v = ScalarValue::try_from_array(b.column(c), i)
                    .map(|s| scalar_json(&s))
                    .unwrap_or(serde_json::Value::Null);
                row.insert(f.name().clone(), v);
            }
            out.push(row);
        }
    }
    out
}

fn scalar_json(s: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    if s.is_null() {
        return J::Null;
    }
    match s {
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(v)) => J::from(*v),
        ScalarValue::Int16(Some(v)) => J::from(*v),
        ScalarValue::Int32(Some(v)) => J::from(*v),
        ScalarValue::Int64(Some(v)) => J::from(*v),
        ScalarValue::UInt8(Some(v)) => J::from(*v),
        ScalarValue::UInt16(Some(v)) => J::from(*v),
        ScalarValue::UInt32(Some(v)) => J::from(*v),
        ScalarValue::UInt64(Some(v)) => J::from(*v),
        ScalarValue::Float32(Some(v)) => J::from(f64::from(*v)),
        ScalarValue::Float64(Some(v)) => J::from(*v),
        ScalarValue::Utf8(Some(v))
        | ScalarValue::LargeUtf8(Some(v))
        | ScalarValue::Utf8View(Some(v)) => J::String(v.clone()),
        ScalarValue::TimestampMillisecond(Some(ms), _) => {
            J::String(uspwatch_proto::rfc3339_millis(*ms))
        }
        ScalarValue::TimestampMicrosecond(Some(us), _) => {
            J::String(uspwatch_proto::rfc3339_millis(us / 1000))
        }
        ScalarValue::TimestampNanosecond(Some(ns), _) => {
            J::String(uspwatch_proto::rfc3339_millis(ns / 1_000_000))
        }
        ScalarValue::TimestampSecond(Some(s), _) => {
            J::String(uspwatch_proto::rfc3339_millis(s * 1000))
        }
        other => J::String(other.to_string()),
    }
}
