//! Volatile SQL functions that carry the evaluation's parameters into a cached plan.
//!
//! DataFusion folds `now()` into a constant when a query is optimised, so a plan built once
//! would keep the time it was planned at. These functions are volatile: they are never folded
//! and read the current [`EvalParams`] each time the plan runs.
//!
//! - `now_ms()` → BIGINT, evaluation time in ms since the epoch; `eval_time()` → TIMESTAMP;
//! - `action_endpoint()`, `action_ms()`, `action_time()` → the endpoint and the time of the
//!   action being verified (in `verify` queries).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use parking_lot::Mutex;

use crate::tables::schema::{TZ, ts_type};

/// Parameters of the query being executed.
#[derive(Debug, Clone, Default)]
pub(crate) struct EvalParams {
    pub now_ms: i64,
    /// Start of the `events` window for the rule being run.
    pub window_start_ms: i64,
    pub action_endpoint: String,
    pub action_ms: i64,
}

pub(crate) type ParamCell = Arc<Mutex<EvalParams>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    NowMs,
    EvalTime,
    ActionEndpoint,
    ActionMs,
    ActionTime,
}

#[derive(Debug)]
struct ParamFn {
    which: Which,
    params: ParamCell,
    signature: Signature,
}

impl PartialEq for ParamFn {
    fn eq(&self, other: &Self) -> bool {
        self.which == other.which && Arc::ptr_eq(&self.params, &other.params)
    }
}
impl Eq for ParamFn {}
impl Hash for ParamFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.which.hash(state);
    }
}

impl ScalarUDFImpl for ParamFn {
    fn name(&self) -> &str {
        match self.which {
            Which::NowMs => "now_ms",
            Which::EvalTime => "eval_time",
            Which::ActionEndpoint => "action_endpoint",
            Which::ActionMs => "action_ms",
            Which::ActionTime => "action_time",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.which {
            Which::NowMs | Which::ActionMs => DataType::Int64,
            Which::EvalTime | Which::ActionTime => ts_type(),
            Which::ActionEndpoint => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let p = self.params.lock();
        let tz = Some(TZ.into());
        Ok(ColumnarValue::Scalar(match self.which {
            Which::NowMs => ScalarValue::Int64(Some(p.now_ms)),
            Which::EvalTime => ScalarValue::TimestampMillisecond(Some(p.now_ms), tz),
            Which::ActionEndpoint => ScalarValue::Utf8(Some(p.action_endpoint.clone())),
            Which::ActionMs => ScalarValue::Int64(Some(p.action_ms)),
            Which::ActionTime => ScalarValue::TimestampMillisecond(Some(p.action_ms), tz),
        }))
    }
}

/// All parameter functions bound to `params`.
pub(crate) fn functions(params: &ParamCell) -> Vec<ScalarUDF> {
    [
        Which::NowMs,
        Which::EvalTime,
        Which::ActionEndpoint,
        Which::ActionMs,
        Which::ActionTime,
    ]
    .into_iter()
    .map(|which| {
        ScalarUDF::new_from_impl(ParamFn {
            which,
            params: params.clone(),
            signature: Signature::nullary(Volatility::Volatile),
        })
    })
    .collect()
}
