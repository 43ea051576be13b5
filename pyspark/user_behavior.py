"""Step 3: per-customer behaviour metrics.

Joins the ``user_purchase`` PostgreSQL dump with the classified reviews written
by ``tokenizer.py`` into one row per customer.

Usage (self-contained: it can be shipped alone to ``spark-submit``)::

    spark-submit user_behavior.py \\
        --purchases   gs://bucket/stage/user_purchase.csv \\
        --reviews     gs://bucket/stage/reviews \\
        --output      gs://bucket/stage/user_behavior \\
        --insert-date 2026-11-24T21:40:00Z \\
        --metrics     gs://bucket/stage/user_behavior_metrics

``--purchases`` is ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER true)``
of ``user_purchase``: header ``invoice_number,stock_code,detail,quantity,
invoice_date,unit_price,customer_id,country``, NULL as an empty unquoted field.
It is read with an explicit schema in FAILFAST mode: a file that does not
match the table (wrong header, unparsable number) fails the job rather than
silently turning values into NULLs.

Output ``--output`` (Parquet, overwrite), one row per non-NULL customer id
found in either input; no column is ever NULL, and all five are written as
``required`` Parquet columns (see :data:`OUTPUT_SCHEMA`):

* ``customer_id`` bigint;
* ``amount_spent`` decimal(38,3): exact SUM(quantity * unit_price), 0 when the
  customer has no purchases (cancellations, with a negative quantity, reduce it);
* ``review_count`` bigint: number of reviews with that ``cid``, 0 if none;
* ``review_score`` bigint: number of positive reviews, 0 if none;
* ``insert_date`` timestamp (Parquet INT64 TIMESTAMP_MICROS, adjusted to UTC):
  the ``--insert-date`` instant, identical on every row.

Purchases with a NULL ``customer_id`` are not a customer and are left out.
``--metrics`` gets one JSON object in a single part file with the integer keys
``purchases_read``, ``reviews_read``, ``rows_written``; the CLI checks the first
two against steps 1 and 2.

The job refuses to run with ANSI mode off (``spark.sql.ansi.enabled``): an
overflowing sum would then be NULL and written as 0. With it on, an overflow
fails the job.

Each input is read once, into the per-customer rows (cached, a few thousand),
from which both the counts and the output are taken.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Dict, Optional, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

APP_NAME = "infra-user-behavior"

MONEY = T.DecimalType(38, 3)

PURCHASES_SCHEMA = T.StructType(
    [
        T.StructField("invoice_number", T.StringType(), True),
        T.StructField("stock_code", T.StringType(), True),
        T.StructField("detail", T.StringType(), True),
        T.StructField("quantity", T.IntegerType(), True),
        T.StructField("invoice_date", T.TimestampType(), True),
        T.StructField("unit_price", T.DecimalType(8, 3), True),
        T.StructField("customer_id", T.IntegerType(), True),
        T.StructField("country", T.StringType(), True),
    ]
)

PURCHASES_READ_OPTIONS = {
    "header": "true",
    # Check the header names against PURCHASES_SCHEMA (case-insensitive).
    "enforceSchema": "false",
    "multiLine": "true",
    "quote": '"',
    "escape": '"',
    "mode": "FAILFAST",
    "encoding": "UTF-8",
}

OUTPUT_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.LongType(), False),
        T.StructField("amount_spent", MONEY, False),
        T.StructField("review_count", T.LongType(), False),
        T.StructField("review_score", T.LongType(), False),
        T.StructField("insert_date", T.TimestampType(), False),
    ]
)

METRICS_SCHEMA = T.StructType(
    [
        T.StructField("purchases_read", T.LongType(), False),
        T.StructField("reviews_read", T.LongType(), False),
        T.StructField("rows_written", T.LongType(), False),
    ]
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_insert_date(value: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp into an aware UTC datetime.

    ``Z`` and numeric offsets are honoured; a value without an offset is taken
    to be UTC.
    """
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def timestamp_literal(instant: dt.datetime):
    """A TIMESTAMP literal for ``instant`` that does not depend on any time zone setting."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    micros = (instant - _EPOCH) // dt.timedelta(microseconds=1)
    # SQL timestamp_micros (Spark >= 3.1) rather than F.timestamp_micros (PySpark >= 3.5).
    return F.expr(f"timestamp_micros(CAST({int(micros)} AS BIGINT))")


def read_purchases(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.schema(PURCHASES_SCHEMA).options(**PURCHASES_READ_OPTIONS).csv(path)


def read_reviews(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.parquet(path)


def aggregate_purchases(purchases: DataFrame) -> DataFrame:
    """``customer_id bigint, amount_spent decimal(38,3), purchase_rows bigint``
    per customer id, with one row for the NULL id (purchases of no customer:
    they count as read, and add nothing to any amount)."""
    customer_id = F.col("customer_id")
    line_amount = F.col("quantity").cast(T.DecimalType(10, 0)) * F.col("unit_price").cast(T.DecimalType(8, 3))
    return purchases.groupBy(customer_id.cast(T.LongType()).alias("customer_id")).agg(
        F.sum(F.when(customer_id.isNotNull(), line_amount)).cast(MONEY).alias("amount_spent"),
        F.count(F.lit(1)).alias("purchase_rows"),
    )


def aggregate_reviews(reviews: DataFrame) -> DataFrame:
    """``cid bigint, review_count bigint, review_score bigint`` per cid, NULL included."""
    return reviews.groupBy(F.col("cid").cast(T.LongType()).alias("cid")).agg(
        F.count(F.lit(1)).cast(T.LongType()).alias("review_count"),
        F.sum(F.col("positive_review").cast(T.LongType())).alias("review_score"),
    )


def join_customers(purchases: DataFrame, reviews: DataFrame) -> DataFrame:
    """Both sides aggregated and full-outer-joined on the customer id, gaps filled
    with 0: ``customer_id`` (NULL for the rows of no customer), the metric's
    columns, and ``purchase_rows`` so that the inputs can be counted from it."""
    p = aggregate_purchases(purchases).alias("p")
    r = aggregate_reviews(reviews).alias("r")
    # NULL ids never match, so each side's NULL group stays a row of its own.
    joined = p.join(r, F.col("p.customer_id") == F.col("r.cid"), "full_outer")
    return joined.select(
        F.coalesce(F.col("p.customer_id"), F.col("r.cid")).alias("customer_id"),
        F.coalesce(F.col("p.amount_spent"), F.lit(0).cast(MONEY)).cast(MONEY).alias("amount_spent"),
        F.coalesce(F.col("r.review_count"), F.lit(0).cast(T.LongType())).alias("review_count"),
        F.coalesce(F.col("r.review_score"), F.lit(0).cast(T.LongType())).alias("review_score"),
        F.coalesce(F.col("p.purchase_rows"), F.lit(0).cast(T.LongType())).alias("purchase_rows"),
    )


def metric_rows(joined: DataFrame, insert_date: dt.datetime) -> DataFrame:
    """The metric table from :func:`join_customers`: customers only."""
    return joined.filter(F.col("customer_id").isNotNull()).select(
        # A no-op (the id is never NULL here) that makes the column
        # non-nullable in the schema, so Parquet stores it as REQUIRED.
        F.coalesce(F.col("customer_id"), F.lit(0).cast(T.LongType())).alias("customer_id"),
        F.col("amount_spent"),
        F.col("review_count"),
        F.col("review_score"),
        timestamp_literal(insert_date).alias("insert_date"),
    )


def build_user_behavior(purchases: DataFrame, reviews: DataFrame, insert_date: dt.datetime) -> DataFrame:
    """Aggregate both sides, full-outer-join them on the customer id, fill gaps with 0."""
    return metric_rows(join_customers(purchases, reviews), insert_date)


def write_metrics(spark: SparkSession, path: str, metrics: Dict[str, int], schema: T.StructType) -> None:
    """Write ``metrics`` as one JSON object in a single part file."""
    row = tuple(int(metrics[field.name]) for field in schema.fields)
    spark.createDataFrame([row], schema).coalesce(1).write.mode("overwrite").json(path)


def configure(spark: SparkSession) -> None:
    # The stored instant must be exactly the UTC time passed in, whatever the
    # cluster's default zone; and INT64 micros instead of the legacy INT96.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    require_ansi(spark)


def require_ansi(spark: SparkSession) -> None:
    """Refuse to run with ANSI mode off: a decimal sum that overflows would be
    NULL, and the full outer join's ``coalesce`` would write it as 0."""
    if spark.conf.get("spark.sql.ansi.enabled", "true").strip().lower() != "true":
        raise RuntimeError(
            "spark.sql.ansi.enabled is false: an overflowing amount_spent would silently become 0. "
            "Remove the setting (ANSI mode is Spark 4's default) and run again."
        )


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="user_behavior.py",
        description="Per-customer amount spent and review counts.",
    )
    parser.add_argument("--purchases", required=True, help="user_purchase CSV dump (file:///... or gs://...)")
    parser.add_argument("--reviews", required=True, help="reviews Parquet directory written by tokenizer.py")
    parser.add_argument("--output", required=True, help="output Parquet directory")
    parser.add_argument(
        "--insert-date",
        required=True,
        type=parse_insert_date,
        help="run start time, ISO 8601 UTC (e.g. 2026-11-24T21:40:00Z)",
    )
    parser.add_argument("--metrics", required=True, help="metrics JSON directory")
    return parser.parse_args(argv)


def run(spark: SparkSession, args: argparse.Namespace) -> Dict[str, int]:
    configure(spark)
    # The inputs are read once, into the joined per-customer rows (a few
    # thousand), which are cached: the counts and the output come from them.
    joined = join_customers(read_purchases(spark, args.purchases), read_reviews(spark, args.reviews)).cache()
    try:
        totals = joined.agg(
            F.coalesce(F.sum("purchase_rows"), F.lit(0)).alias("purchases_read"),
            F.coalesce(F.sum("review_count"), F.lit(0)).alias("reviews_read"),
            F.count("customer_id").alias("rows_written"),
        ).first()
        metric_rows(joined, args.insert_date).write.mode("overwrite").parquet(args.output)
    finally:
        joined.unpersist()
    metrics = {name: int(totals[name]) for name in ("purchases_read", "reviews_read", "rows_written")}
    write_metrics(spark, args.metrics, metrics, METRICS_SCHEMA)
    return metrics


def main(argv: Optional[Sequence[str]] = None, spark: Optional[SparkSession] = None) -> int:
    """Entry point. ``spark`` is for tests; otherwise a session is created and stopped."""
    args = parse_args(argv)
    owns_session = spark is None
    if spark is None:
        spark = (
            SparkSession.builder.appName(APP_NAME)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .getOrCreate()
        )
    try:
        metrics = run(spark, args)
    finally:
        if owns_session:
            spark.stop()
    print(
        "user_behavior: purchases_read={purchases_read} reviews_read={reviews_read} rows_written={rows_written}".format(
            **metrics
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
