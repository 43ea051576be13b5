"""Step 2: classify movie reviews as positive / not positive.

Reads the raw ``movie_review.csv`` (header ``cid,review_str,id_review``), tokenizes
each review like the original job (lower-case, ``RegexTokenizer`` splitting on
``\\W``, default English ``StopWordsRemover``) and flags a review as positive when
one of the remaining tokens is exactly ``good``.

Usage (self-contained: it can be shipped alone to ``spark-submit``)::

    spark-submit tokenizer.py \\
        --input   gs://bucket/raw/movie_review.csv \\
        --output  gs://bucket/stage/reviews \\
        --rejects gs://bucket/stage/reviews_rejects \\
        --metrics gs://bucket/stage/reviews_metrics

Outputs (all in overwrite mode):

* ``--output``: Parquet, schema exactly ``cid int, id_review string,
  positive_review int``.
* ``--rejects``: one CSV file with a header, RFC 4180 quoting (``"`` doubled),
  columns ``reason,cid,review_str,id_review,raw_record``. ``reason`` is
  :data:`REASON_FIELD_COUNT`, ``<column> is not valid UTF-8`` (see
  :func:`not_utf8_reason`) or :data:`REASON_BAD_CID`; ``raw_record`` is the raw
  text of the record when Spark reports it as malformed (wrong field count),
  empty otherwise. Values are written verbatim (no whitespace trimming), except
  that bytes that are not UTF-8 are written as U+FFFD.
* ``--metrics``: one JSON object in a single ``part-*.json`` file with the
  integer keys ``rows_read``, ``rows_written``, ``rows_rejected``;
  ``rows_read == rows_written + rows_rejected`` always holds.

Record validation:

* A record must have exactly three fields; Spark's CSV reader (PERMISSIVE mode)
  puts the raw text of a record with too few or too many fields in the corrupt
  record column, which is how such records are detected.
* Every field must be valid UTF-8, as for purchases. The file is parsed as
  ISO-8859-1, which maps each byte to one character, so records split on the
  file's bytes and no byte is silently replaced; each field is then turned back
  into its bytes and checked (Spark's UTF-8 reader would put U+FFFD in place of
  such bytes and keep the row). Quotes, commas and line ends are ASCII and never
  occur inside a UTF-8 multi-byte sequence, so a valid file splits exactly as it
  would when read as UTF-8.
* ``cid`` must be an optional ``+``/``-`` sign followed by ASCII digits only
  (no whitespace, no decimal point, leading zeros allowed) whose value lies in
  [-2147483648, 2147483647]. An empty ``cid`` is rejected too.
* An empty or missing ``review_str`` is a valid review that is not positive.

Blank lines outside quoted fields are not records (Spark skips them). A UTF-8
BOM at the start of the file is ignored, and the header must name the columns
``cid,review_str,id_review`` in that order (case-insensitive), otherwise the
job fails instead of silently mixing columns up.

An empty file (no header: zero bytes, or only blank lines) is an error, as it
is for purchases; a file with a header and no records is zero reviews.

The input is parsed once: the first pass counts the records and fills the
cache, from which the Parquet output and the rejects are written. The rows
written are counted from the Parquet footers (no data is read back).
(``Dataset.observe`` would save the counting pass, but Spark Connect 4.0 returns
no observed metrics for a write, and AQE drops them for empty inputs.) ``SparkSession.builder.getOrCreate()`` connects to a Spark Connect server
when ``SPARK_REMOTE`` is set (the local target), and is the cluster's session on
Dataproc.
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, Optional, Sequence, Tuple

from pyspark.ml.feature import RegexTokenizer, StopWordsRemover
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

APP_NAME = "infra-tokenizer"

CORRUPT_COLUMN = "_corrupt_record"
INPUT_COLUMNS = ("cid", "review_str", "id_review")

#: Every column is read as a string so that validation happens here and not in
#: the CSV parser; the extra column receives the raw text of malformed records.
RAW_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType(), True) for name in INPUT_COLUMNS]
    + [T.StructField(CORRUPT_COLUMN, T.StringType(), True)]
)

CSV_READ_OPTIONS = {
    "header": "true",
    # Validate the header against RAW_SCHEMA (Spark strips a UTF-8 BOM first).
    "enforceSchema": "false",
    "multiLine": "true",
    "quote": '"',
    "escape": '"',
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_COLUMN,
    "encoding": "UTF-8",
}

#: How the records are split: as :data:`CSV_READ_OPTIONS`, but one character per
#: byte, and the header (already checked with :data:`CSV_READ_OPTIONS`) skipped.
BYTE_READ_OPTIONS = {
    **CSV_READ_OPTIONS,
    "encoding": "ISO-8859-1",
    "enforceSchema": "true",
}

#: Set on a row whose field is not valid UTF-8: the first such column's name.
NOT_UTF8_COLUMN = "_not_utf8"

CSV_WRITE_OPTIONS = {
    "header": "true",
    "quote": '"',
    "escape": '"',
    # The writer trims values by default; rejects must be written verbatim.
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
}

REASON_FIELD_COUNT = "wrong field count"
REASON_BAD_CID = "cid is not a 32-bit integer"


def not_utf8_reason(column: str) -> str:
    """The reject reason for a field that is not UTF-8 (worded like purchases')."""
    return f"{column} is not valid UTF-8"


REJECT_COLUMNS = ("reason", "cid", "review_str", "id_review", "raw_record")

#: ``\A`` and ``\z`` rather than ``^``/``$``: Java's ``$`` also matches before a
#: trailing newline, and Spark's cast would then silently trim it.
CID_PATTERN = r"\A[+-]?[0-9]+\z"

OUTPUT_SCHEMA = T.StructType(
    [
        T.StructField("cid", T.IntegerType(), True),
        T.StructField("id_review", T.StringType(), True),
        T.StructField("positive_review", T.IntegerType(), True),
    ]
)

METRICS_SCHEMA = T.StructType(
    [
        T.StructField("rows_read", T.LongType(), False),
        T.StructField("rows_written", T.LongType(), False),
        T.StructField("rows_rejected", T.LongType(), False),
    ]
)


def _cid_as_int():
    # SQL try_cast (Spark >= 3.2) rather than Column.try_cast (PySpark >= 4.0):
    # NULL instead of an error (ANSI mode) when out of range.
    return F.expr("try_cast(cid AS INT)")


def check_header(spark: SparkSession, path: str) -> None:
    """Fail unless ``path`` starts with the expected header.

    Reads only the start of the file: one line as text (to tell an empty file),
    then Spark's own header check against :data:`RAW_SCHEMA`, BOM stripped.
    """
    first = spark.read.text(path).filter(F.length(F.trim(F.col("value"))) > 0).limit(1).collect()
    if not first:
        raise ValueError(f"{path} is empty: expected a header row `{','.join(INPUT_COLUMNS)}`")
    spark.read.schema(RAW_SCHEMA).options(**CSV_READ_OPTIONS).csv(path).limit(1).collect()


def _bytes_as_string(column: str):
    # ISO-8859-1 text back to the file's bytes, then those bytes as a string
    # with no decoding (a cast from binary never replaces anything).
    return F.expr(f"CAST(encode(`{column}`, 'ISO-8859-1') AS STRING)")


def read_raw_reviews(spark: SparkSession, path: str) -> DataFrame:
    """Read the review CSV with every field as a string plus the corrupt column,
    and :data:`NOT_UTF8_COLUMN` (NULL, or the first column that is not UTF-8).

    The header is checked first (:func:`check_header`). The result is cached:
    Spark refuses queries on a raw CSV scan that reference only the corrupt
    record column, and the cache is what lets both outputs be written from a
    single parse of the file.
    """
    check_header(spark, path)
    parsed = spark.read.schema(RAW_SCHEMA).options(**BYTE_READ_OPTIONS).csv(path)
    restored = [_bytes_as_string(name).alias(name) for name in (*INPUT_COLUMNS, CORRUPT_COLUMN)]
    not_utf8 = F.lit(None).cast(T.StringType())
    for name in reversed(INPUT_COLUMNS):
        bad = F.col(name).isNotNull() & ~F.is_valid_utf8(F.col(name))
        not_utf8 = F.when(bad, F.lit(name)).otherwise(not_utf8)
    return parsed.select(*restored).withColumn(NOT_UTF8_COLUMN, not_utf8).cache()


def with_reject_reason(raw: DataFrame) -> DataFrame:
    """Add a ``reason`` column: NULL for a valid record, else why it is rejected.

    The checks run in the order purchases use: field count, UTF-8, then values.
    """
    cid = F.col("cid")
    cid_ok = cid.isNotNull() & cid.rlike(CID_PATTERN) & _cid_as_int().isNotNull()
    not_utf8 = F.col(NOT_UTF8_COLUMN)
    reason = (
        F.when(F.col(CORRUPT_COLUMN).isNotNull(), F.lit(REASON_FIELD_COUNT))
        .when(not_utf8.isNotNull(), F.concat(not_utf8, F.lit(" is not valid UTF-8")))
        .when(~F.coalesce(cid_ok, F.lit(False)), F.lit(REASON_BAD_CID))
        .otherwise(F.lit(None).cast(T.StringType()))
    )
    return raw.withColumn("reason", reason)


def split_reviews(raw: DataFrame) -> Tuple[DataFrame, DataFrame]:
    """Split raw records into ``(valid, rejected)``.

    ``valid`` has ``cid int, review_str string, id_review string``;
    ``rejected`` has the columns of :data:`REJECT_COLUMNS`, all strings.
    """
    checked = with_reject_reason(raw)
    valid = checked.filter(F.col("reason").isNull()).select(
        _cid_as_int().alias("cid"),
        F.col("review_str"),
        F.col("id_review"),
    )
    rejected = checked.filter(F.col("reason").isNotNull()).select(
        F.col("reason"),
        F.col("cid"),
        F.col("review_str"),
        F.col("id_review"),
        F.col(CORRUPT_COLUMN).alias("raw_record"),
    )
    return valid, rejected


def classify_reviews(valid: DataFrame) -> DataFrame:
    """Tokenize ``review_str`` and compute ``positive_review`` (1 if a token is ``good``).

    Returns ``cid int, id_review string, positive_review int``.
    """
    # RegexTokenizer fails on NULL input: an absent review is an empty one.
    text = valid.withColumn("review_text", F.lower(F.coalesce(F.col("review_str"), F.lit(""))))
    tokenizer = RegexTokenizer(inputCol="review_text", outputCol="review_token", pattern="\\W")
    # An explicit locale: the default is the JVM's, which StopWordsRemover
    # rejects when it is not one it knows (e.g. some container locales).
    remover = StopWordsRemover(inputCol="review_token", outputCol="review_clean", locale="en_US")
    tokens = remover.transform(tokenizer.transform(text))
    return tokens.select(
        F.col("cid").cast(T.IntegerType()).alias("cid"),
        F.col("id_review").cast(T.StringType()).alias("id_review"),
        F.array_contains(F.col("review_clean"), "good").cast(T.IntegerType()).alias("positive_review"),
    )


def write_metrics(spark: SparkSession, path: str, metrics: Dict[str, int], schema: T.StructType) -> None:
    """Write ``metrics`` as one JSON object in a single part file."""
    row = tuple(int(metrics[field.name]) for field in schema.fields)
    spark.createDataFrame([row], schema).coalesce(1).write.mode("overwrite").json(path)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tokenizer.py",
        description="Classify movie reviews (positive if a token is 'good').",
    )
    parser.add_argument("--input", required=True, help="movie_review.csv (file:///... or gs://...)")
    parser.add_argument("--output", required=True, help="output Parquet directory")
    parser.add_argument("--rejects", required=True, help="rejected records CSV directory")
    parser.add_argument("--metrics", required=True, help="metrics JSON directory")
    return parser.parse_args(argv)


def count_reviews(raw: DataFrame) -> Dict[str, int]:
    """Count read / valid / rejected records in a single pass (which also
    fills the cache that both writes then read from)."""
    checked = with_reject_reason(raw)
    row = checked.agg(
        F.count(F.lit(1)).alias("rows_read"),
        F.count(F.col("reason")).alias("rows_rejected"),
    ).first()
    rows_read = int(row["rows_read"])
    rows_rejected = int(row["rows_rejected"])
    return {
        "rows_read": rows_read,
        "rows_written": rows_read - rows_rejected,
        "rows_rejected": rows_rejected,
    }


def run(spark: SparkSession, args: argparse.Namespace) -> Dict[str, int]:
    raw = read_raw_reviews(spark, args.input)
    try:
        metrics = count_reviews(raw)
        valid, rejected = split_reviews(raw)
        classify_reviews(valid).write.mode("overwrite").parquet(args.output)
        # Count what landed, not what should have: the CLI checks
        # rows_read == rows_written + rows_rejected against these. Parquet
        # keeps row counts in its footers, so this reads no data.
        metrics["rows_written"] = spark.read.parquet(args.output).count()
        rejected.coalesce(1).write.mode("overwrite").options(**CSV_WRITE_OPTIONS).csv(args.rejects)
        write_metrics(spark, args.metrics, metrics, METRICS_SCHEMA)
    finally:
        raw.unpersist()
    return metrics


def main(argv: Optional[Sequence[str]] = None, spark: Optional[SparkSession] = None) -> int:
    """Entry point. ``spark`` is for tests; otherwise a session is created and stopped."""
    args = parse_args(argv)
    owns_session = spark is None
    if spark is None:
        spark = SparkSession.builder.appName(APP_NAME).getOrCreate()
    try:
        metrics = run(spark, args)
    finally:
        if owns_session:
            spark.stop()
    print(
        "tokenizer: rows_read={rows_read} rows_written={rows_written} rows_rejected={rows_rejected}".format(**metrics)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
