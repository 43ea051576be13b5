//! Step 4: the metric from staging Parquet into the warehouse.

use anyhow::{Result, bail};

use crate::backend::{Bucket, Column, ColumnKind, Journal, TableRef, Warehouse};
use crate::plan::keys;
use crate::record::Counts;

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

/// The Parquet files step 3 wrote, as a glob URI.
pub fn source(staging: &dyn Bucket) -> String {
    staging.uri(&format!("{}/*.parquet", keys::USER_BEHAVIOR))
}

/// Replaces `table` with `staging/user_behavior/*.parquet`, and checks
/// that it holds as many rows as step 3 says it wrote.
pub async fn load_metric(
    warehouse: &dyn Warehouse,
    staging: &dyn Bucket,
    table: &TableRef,
    journal: &dyn Journal,
) -> Result<Counts> {
    let written = super::spark::user_behavior_metrics(staging)
        .await?
        .rows_written;
    let rows = warehouse
        .replace_from_parquet(table, &METRIC_COLUMNS, &source(staging), journal)
        .await?;
    if rows != written {
        bail!("{table} received {rows} rows, but step 3 wrote {written}");
    }
    Ok(Counts {
        rows_in: rows,
        rows_out: rows,
        rows_rejected: 0,
    })
}
