//! The tables rules query (`events`, `latest`, `devices`, `commands`): DataFusion table
//! providers over in-memory state that changes between evaluations.
//!
//! A provider's `scan` happens once, when a rule is planned; the resulting [`SourceExec`]
//! fetches the current data each time the plan is executed. That is what lets a rule's
//! physical plan be built once and re-run every tick.

pub(crate) mod exec;
pub(crate) mod ring;
pub(crate) mod schema;
pub(crate) mod sources;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use exec::{Pruner, Source, SourceExec};

/// A table whose rows come from a [`Source`] at execution time.
#[derive(Debug)]
pub(crate) struct LiveTable {
    source: Arc<dyn Source>,
    /// Whether filters on the partition key (`kind`, `path`, `name`) can skip partitions.
    prunable: bool,
}

impl LiveTable {
    pub fn new(source: Arc<dyn Source>, prunable: bool) -> Self {
        LiveTable { source, prunable }
    }

    fn is_key_filter(&self, e: &Expr) -> bool {
        self.prunable
            && !e.is_volatile()
            && !e.column_refs().is_empty()
            && e.column_refs()
                .iter()
                .all(|c| matches!(c.name.as_str(), "kind" | "path" | "name"))
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.source.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.is_key_filter(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let key_schema = DFSchema::try_from(schema::partition_key_schema().as_ref().clone())?;
        let mut exprs = Vec::new();
        for f in filters.iter().filter(|f| self.is_key_filter(f)) {
            let unqualified = f
                .clone()
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(c) => {
                            Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                        }
                        other => Transformed::no(other),
                    })
                })?
                .data;
            exprs.push(state.create_physical_expr(unqualified, &key_schema)?);
        }
        let pruner = (!exprs.is_empty()).then(|| Pruner::new(exprs));
        Ok(Arc::new(SourceExec::try_new(
            self.source.clone(),
            projection.cloned(),
            pruner,
        )?))
    }
}
