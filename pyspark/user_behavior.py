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
``purchases_read``, ``reviews_read``, ``rows_written``.
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
    """``customer_id bigint, amount_spent decimal(38,3)`` per non-NULL customer id."""
    line_amount = F.col("quantity").cast(T.DecimalType(10, 0)) * F.col("unit_price").cast(T.DecimalType(8, 3))
    return (
        purchases.filter(F.col("customer_id").isNotNull())
        .groupBy(F.col("customer_id").cast(T.LongType()).alias("customer_id"))
        .agg(F.sum(line_amount).cast(MONEY).alias("amount_spent"))
    )


def aggregate_reviews(reviews: DataFrame) -> DataFrame:
    """``cid bigint, review_count bigint, review_score bigint`` per non-NULL cid."""
    return (
        reviews.filter(F.col("cid").isNotNull())
        .groupBy(F.col("cid").cast(T.LongType()).alias("cid"))
        .agg(
            F.count(F.lit(1)).cast(T.LongType()).alias("review_count"),
            F.sum(F.col("positive_review").cast(T.LongType())).alias("review_score"),
        )
    )


def build_user_behavior(purchases: DataFrame, reviews: DataFrame, insert_date: dt.datetime) -> DataFrame:
    """Aggregate both sides, full-outer-join them on the customer id, fill gaps with 0."""
    p = aggregate_purchases(purchases).alias("p")
    r = aggregate_reviews(reviews).alias("r")
    joined = p.join(r, F.col("p.customer_id") == F.col("r.cid"), "full_outer")
    customer_id = F.coalesce(F.col("p.customer_id"), F.col("r.cid"))
    result = (
        joined.select(
            customer_id.alias("customer_id"),
            F.coalesce(F.col("p.amount_spent"), F.lit(0).cast(MONEY)).cast(MONEY).alias("amount_spent"),
            F.coalesce(F.col("r.review_count"), F.lit(0).cast(T.LongType())).alias("review_count"),
            F.coalesce(F.col("r.review_score"), F.lit(0).cast(T.LongType())).alias("review_score"),
        )
        # Never true: both sides drop NULL ids and a full outer join row has at
        # least one side. Kept as a guard for the no-op below.
        .filter(F.col("customer_id").isNotNull())
    )
    return result.select(
        # A no-op (the id is never NULL here) that makes the column
        # non-nullable in the schema, so Parquet stores it as REQUIRED.
        F.coalesce(F.col("customer_id"), F.lit(0).cast(T.LongType())).alias("customer_id"),
        F.col("amount_spent"),
        F.col("review_count"),
        F.col("review_score"),
        timestamp_literal(insert_date).alias("insert_date"),
    )


def write_metrics(spark: SparkSession, path: str, metrics: Dict[str, int], schema: T.StructType) -> None:
    """Write ``metrics`` as one JSON object in a single part file."""
    row = tuple(int(metrics[field.name]) for field in schema.fields)
    spark.createDataFrame([row], schema).coalesce(1).write.mode("overwrite").json(path)


def configure(spark: SparkSession) -> None:
    # The stored instant must be exactly the UTC time passed in, whatever the
    # cluster's default zone; and INT64 micros instead of the legacy INT96.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")


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
    purchases = read_purchases(spark, args.purchases).cache()
    reviews = read_reviews(spark, args.reviews).cache()
    try:
        purchases_read = purchases.count()
        reviews_read = reviews.count()
        result = build_user_behavior(purchases, reviews, args.insert_date).cache()
        try:
            rows_written = result.count()
            result.write.mode("overwrite").parquet(args.output)
        finally:
            result.unpersist()
    finally:
        purchases.unpersist()
        reviews.unpersist()
    metrics = {"purchases_read": purchases_read, "reviews_read": reviews_read, "rows_written": rows_written}
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
