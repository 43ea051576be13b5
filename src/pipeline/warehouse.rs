//! Step 4: the metric from staging Parquet into the warehouse.

use anyhow::Result;

use crate::plan::keys;
use crate::record::Counts;
use crate::backend::{Bucket, Column, ColumnKind, TableRef, Warehouse};

/// `user_behavior_metric`'s schema: BIGINT/INT64, DECIMAL(38,3)/NUMERIC,
/// BIGINT, BIGINT, TIMESTAMP.
pub const METRIC_COLUMNS: [Column; 5] = [
    Column {
        name: "customer_id",
        kind: ColumnKind::Int64,
        nullable: false,
    },
    Column {
        name: "amount_spent",
        kind: ColumnKind::Decimal38_3,
        nullable: true,
    },
    Column {
        name: "review_count",
        kind: ColumnKind::Int64,
        nullable: true,
    },
    Column {
        name: "review_score",
        kind: ColumnKind::Int64,
        nullable: true,
    },
    Column {
        name: "insert_date",
        kind: ColumnKind::Timestamp,
        nullable: true,
    },
];

/// Replaces `table` with `staging/user_behavior/*.parquet`.
pub async fn load_metric(
    warehouse: &dyn Warehouse,
    staging: &dyn Bucket,
    table: &TableRef,
) -> Result<Counts> {
    let source = staging.uri(&format!("{}/*.parquet", keys::USER_BEHAVIOR));
    let rows = warehouse
        .replace_from_parquet(table, &METRIC_COLUMNS, &source)
        .await?;
    Ok(Counts {
        rows_in: rows,
        rows_out: rows,
        rows_rejected: 0,
    })
}
