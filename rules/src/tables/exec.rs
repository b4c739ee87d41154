//! [`SourceExec`]: the leaf execution plan that reads a [`Source`] each time it runs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use parking_lot::Mutex;

/// Where a table's rows come from at execution time.
pub(crate) trait Source: fmt::Debug + Send + Sync + 'static {
    fn schema(&self) -> SchemaRef;
    /// The table's current rows; `pruner` may skip partitions whose key cannot match.
    fn batches(&self, pruner: Option<&Pruner>) -> DfResult<Vec<RecordBatch>>;
}

/// Filters on the partition key, evaluated once per partition (a partition's key never
/// changes, so the answer is cached for the life of the plan).
pub(crate) struct Pruner {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    cache: Mutex<HashMap<usize, bool>>,
}

impl fmt::Debug for Pruner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pruner({} filters)", self.exprs.len())
    }
}

impl Pruner {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        Pruner {
            exprs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether partition `id` (with the one-row `key` batch) may hold matching rows.
    pub fn keep(&self, id: usize, key: &RecordBatch) -> bool {
        if key.num_rows() == 0 {
            return true;
        }
        if let Some(k) = self.cache.lock().get(&id) {
            return *k;
        }
        let keep = self.exprs.iter().all(|e| {
            // Anything that cannot be decided here is kept: DataFusion filters the rows again.
            match e.evaluate(key).and_then(|v| v.into_array(1)) {
                Ok(a) => match a.as_any().downcast_ref::<BooleanArray>() {
                    Some(b) => b.is_valid(0) && b.value(0),
                    None => true,
                },
                Err(_) => true,
            }
        });
        self.cache.lock().insert(id, keep);
        keep
    }
}

/// Leaf plan over a [`Source`]; one partition.
#[derive(Debug)]
pub(crate) struct SourceExec {
    source: Arc<dyn Source>,
    projection: Option<Vec<usize>>,
    pruner: Option<Arc<Pruner>>,
    props: Arc<PlanProperties>,
}

impl SourceExec {
    pub fn try_new(
        source: Arc<dyn Source>,
        projection: Option<Vec<usize>>,
        pruner: Option<Pruner>,
    ) -> DfResult<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(source.schema().project(p)?),
            None => source.schema(),
        };
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(SourceExec {
            source,
            projection,
            pruner: pruner.map(Arc::new),
            props: Arc::new(props),
        })
    }
}

impl DisplayAs for SourceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "LiveSourceExec: pruned={}", self.pruner.is_some())
    }
}

impl ExecutionPlan for SourceExec {
    fn name(&self) -> &str {
        "LiveSourceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batches = self.source.batches(self.pruner.as_deref())?;
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            self.props.eq_properties.schema().clone(),
            self.projection.clone(),
        )?))
    }
}
