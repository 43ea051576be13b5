"""Contract tests of pyspark/user_behavior.py (step 3)."""

from __future__ import annotations

import argparse
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F

import tokenizer
import user_behavior
from conftest import file_uri, read_metrics, write_bytes

INSERT_DATE = "2026-11-24T21:40:00Z"
INSERT_MICROS = 1795556400 * 1_000_000  # 2026-11-24T21:40:00Z
assert dt.datetime.fromtimestamp(INSERT_MICROS / 1e6, dt.timezone.utc).isoformat() == "2026-11-24T21:40:00+00:00"

PURCHASES_HEADER = "invoice_number,stock_code,detail,quantity,invoice_date,unit_price,customer_id,country"


def purchase(inv, stock, detail, qty, when, price, customer, country="United Kingdom"):
    """One line as PostgreSQL's COPY ... (FORMAT csv) writes it: NULL is an empty
    unquoted field, a value is quoted only when it needs to be."""

    def field(v):
        if v is None:
            return ""
        s = str(v)
        if any(c in s for c in ',"\r\n') or s == "":
            return '"' + s.replace('"', '""') + '"'
        return s

    return ",".join(field(v) for v in (inv, stock, detail, qty, when, price, customer, country))


def purchases_csv():
    lines = [PURCHASES_HEADER]
    # Customer 100: 100 x 0.100 + 3 x 1.005 = 10.000 + 3.015 (floats get both wrong).
    for _ in range(100):
        lines.append(purchase("536365", "85123A", "WHITE HANGING HEART", 1, "2010-12-01 08:26:00", "0.100", 100))
    lines.append(purchase("536366", "71053", "WHITE METAL LANTERN", 3, "2010-12-01 08:28:00", "1.005", 100))
    # Customer 200: a purchase, its cancellation, another purchase; awkward details.
    lines.append(
        purchase("536367", "84406B", 'CREAM CUPID, "HEARTS"\nCOAT HANGER', 6, "2010-12-01 08:34:00", "2.550", 200)
    )
    lines.append(purchase("C536379", "84406B", "", -6, "2010-12-01 09:41:00", "2.550", 200))
    lines.append(purchase("536368", "22960", "JAM MAKING SET,\r\nWITH JARS", 2, "2010-12-01 08:34:00.5", "4.250", 200))
    # Customer 300 (purchases only): bad-debt adjustment both ways, and a small line.
    lines.append(
        purchase("A563185", "B", "Adjust bad debt", 1, "2011-08-12 14:50:00", "11062.060", 300, "United Kingdom")
    )
    lines.append(purchase("A563186", "B", "Adjust bad debt", 1, "2011-08-12 14:51:00", "-11062.060", 300))
    lines.append(purchase("536369", "21756", "BATH BUILDING BLOCK WORD", 12, "2010-12-01 08:35:00", "0.850", 300))
    # Customer 500: a line without a quantity counts as nothing.
    lines.append(purchase("536370", "22728", "ALARM CLOCK BAKELIKE PINK", None, "2010-12-01 08:45:00", "3.750", 500))
    lines.append(purchase("536370", "22727", "ALARM CLOCK BAKELIKE RED", 2, "2010-12-01 08:45:00", "1.250", 500, None))
    # No customer id: not a customer, whatever the amount.
    lines.append(purchase("536414", "22139", None, 56, "2010-12-01 11:52:00", "0.000", None))
    lines.append(
        purchase("536544", "21773", "DECORATIVE ROSE BATHROOM, BOTTLE", 1, "2010-12-01 14:32:00", "2.510", None)
    )
    lines.append(purchase("C536545", "M", "Manual", -1, "2010-12-01 14:33:00", "-11062.060", None))
    return ("\n".join(lines) + "\n").encode("utf-8")


N_PURCHASES = 100 + 1 + 3 + 3 + 2 + 3

# (cid, id_review, positive_review) as tokenizer.py writes them.
REVIEWS = [
    (100, "r1", 0),
    (100, "r2", 0),
    (400, "r3", 1),  # reviews only
    (400, "r4", 1),
    (400, "r5", 0),
    (0, "r6", 1),  # customer 0 is a customer like any other
    (-7, "r7", 0),
]

EXPECTED = {
    # customer_id: (amount_spent, review_count, review_score)
    0: (Decimal("0.000"), 1, 1),
    -7: (Decimal("0.000"), 1, 0),
    100: (Decimal("13.015"), 2, 0),
    200: (Decimal("8.500"), 0, 0),
    300: (Decimal("10.200"), 0, 0),
    400: (Decimal("0.000"), 3, 2),
    500: (Decimal("2.500"), 0, 0),
}


@pytest.fixture
def inputs(spark, tmp_path):
    purchases = write_bytes(tmp_path / "user_purchase.csv", purchases_csv())
    reviews_dir = tmp_path / "reviews"
    spark.createDataFrame(REVIEWS, tokenizer.OUTPUT_SCHEMA).write.mode("overwrite").parquet(file_uri(reviews_dir))
    return purchases, file_uri(reviews_dir)


def run_main(spark, tmp_path, purchases, reviews, insert_date=INSERT_DATE):
    out, metrics = tmp_path / "out", tmp_path / "metrics"
    argv = [
        "--purchases", purchases,
        "--reviews", reviews,
        "--output", file_uri(out),
        "--insert-date", insert_date,
        "--metrics", file_uri(metrics),
    ]  # fmt: skip
    assert user_behavior.main(argv, spark=spark) == 0
    return out, metrics


def as_dict(df):
    return {r["customer_id"]: (r["amount_spent"], r["review_count"], r["review_score"]) for r in df.collect()}


def test_main_end_to_end(spark, tmp_path, inputs):
    out, metrics_dir = run_main(spark, tmp_path, *inputs)
    result = spark.read.parquet(file_uri(out))
    assert result.dtypes == [
        ("customer_id", "bigint"),
        ("amount_spent", "decimal(38,3)"),
        ("review_count", "bigint"),
        ("review_score", "bigint"),
        ("insert_date", "timestamp"),
    ]
    got = as_dict(result)
    assert got == EXPECTED
    for amount, _, _ in got.values():
        assert isinstance(amount, Decimal) and amount.as_tuple().exponent == -3
    assert result.filter(F.col("customer_id").isNull()).count() == 0

    stamps = result.select(
        F.unix_micros("insert_date").alias("micros"),
        F.date_format(F.to_utc_timestamp("insert_date", "UTC"), "yyyy-MM-dd'T'HH:mm:ss").alias("utc"),
    ).distinct()
    assert [tuple(r) for r in stamps.collect()] == [(INSERT_MICROS, "2026-11-24T21:40:00")]

    metrics = read_metrics(metrics_dir)
    assert metrics == {"purchases_read": N_PURCHASES, "reviews_read": len(REVIEWS), "rows_written": len(EXPECTED)}
    assert all(type(v) is int for v in metrics.values())


def parquet_footer_schema(spark, directory: Path) -> str:
    """The Parquet (not Spark) schema of the one data file, via parquet-mr."""
    jvm = spark.sparkContext._jvm
    [part] = sorted(directory.glob("part-*.parquet"))
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(part.as_uri())
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(
        jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(path, conf)
    )
    try:
        return reader.getFooter().getFileMetaData().getSchema().toString()
    finally:
        reader.close()


def test_parquet_physical_schema(spark, tmp_path, inputs):
    out, _ = run_main(spark, tmp_path, *inputs)
    schema = parquet_footer_schema(spark, out)
    # Every column is non-nullable by construction, so all are REQUIRED.
    assert "required int64 customer_id;" in schema
    assert "required fixed_len_byte_array(16) amount_spent (DECIMAL(38,3));" in schema
    assert "required int64 review_count;" in schema
    assert "required int64 review_score;" in schema
    assert "required int64 insert_date (TIMESTAMP(MICROS,true));" in schema


def test_rerun_overwrites(spark, tmp_path, inputs):
    run_main(spark, tmp_path, *inputs)
    out, metrics_dir = run_main(spark, tmp_path, *inputs, insert_date="2026-11-25T00:00:00Z")
    result = spark.read.parquet(file_uri(out))
    assert result.count() == len(EXPECTED)
    assert result.select("customer_id").distinct().count() == len(EXPECTED)
    assert {r[0] for r in result.select(F.unix_micros("insert_date")).distinct().collect()} == {
        (INSERT_MICROS // 1_000_000 + 8400) * 1_000_000
    }
    assert read_metrics(metrics_dir)["rows_written"] == len(EXPECTED)


def test_insert_date_does_not_depend_on_session_time_zone(spark):
    purchases = spark.createDataFrame([], user_behavior.PURCHASES_SCHEMA)
    reviews = spark.createDataFrame([(1, "a", 1)], tokenizer.OUTPUT_SCHEMA)
    instant = user_behavior.parse_insert_date(INSERT_DATE)
    previous = spark.conf.get("spark.sql.session.timeZone")
    try:
        for zone in ("America/Los_Angeles", "Asia/Kolkata", "UTC"):
            spark.conf.set("spark.sql.session.timeZone", zone)
            df = user_behavior.build_user_behavior(purchases, reviews, instant)
            assert df.select(F.unix_micros("insert_date")).first()[0] == INSERT_MICROS, zone
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)


def test_aggregation_on_dataframes(spark):
    """The pure function, without files: the three bugs of the original script."""
    rows = [
        ("1", "a", None, 10, None, Decimal("0.100"), 1, "UK"),
        ("1", "a", None, 10, None, Decimal("0.100"), 1, "UK"),
        ("2", "a", None, 5, None, Decimal("9.999"), None, "UK"),  # no customer
        ("3", "a", None, -1, None, Decimal("0.200"), 2, "UK"),  # cancellation only
    ]
    purchases = spark.createDataFrame(rows, user_behavior.PURCHASES_SCHEMA)
    reviews = spark.createDataFrame([(3, "x", 1), (3, "y", 0), (1, "z", 1)], tokenizer.OUTPUT_SCHEMA)
    df = user_behavior.build_user_behavior(purchases, reviews, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert df.schema == user_behavior.OUTPUT_SCHEMA  # types and nullable=False
    assert as_dict(df) == {
        1: (Decimal("2.000"), 1, 1),
        2: (Decimal("-0.200"), 0, 0),
        3: (Decimal("0.000"), 2, 1),  # reviews only: id from the review side
    }


def test_decimal_sum_is_exact_at_scale(spark):
    """Many 0.1 / 1.005 lines sum to the exact decimal (a binary float sum drifts)."""
    n = 5000
    rows = [("i", "s", None, 1, None, Decimal("0.100"), 9, "UK")] * n
    rows += [("i", "s", None, 7, None, Decimal("1.005"), 9, "UK")] * n
    rows += [("i", "s", None, -2147483648, None, Decimal("-99999.999"), 8, "UK")] * 3
    purchases = spark.createDataFrame(rows, user_behavior.PURCHASES_SCHEMA)
    reviews = spark.createDataFrame([], tokenizer.OUTPUT_SCHEMA)
    df = user_behavior.build_user_behavior(purchases, reviews, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    got = {r["customer_id"]: r["amount_spent"] for r in df.collect()}
    assert str(got[9]) == "35675.000"
    # The extremes of the input types: 3 x (-2^31 x -99999.999), to the last digit.
    assert str(got[8]) == str(3 * Decimal(-2147483648) * Decimal("-99999.999"))


def test_ansi_mode_off_is_refused(spark, tmp_path, inputs):
    """Regression (issue 13): with ANSI off an overflowing sum is NULL and the
    join's coalesce writes 0; the job refuses to run instead."""
    previous = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "false")
    try:
        with pytest.raises(RuntimeError, match="spark.sql.ansi.enabled is false"):
            run_main(spark, tmp_path, *inputs)
    finally:
        spark.conf.set("spark.sql.ansi.enabled", previous)
    assert not (tmp_path / "out").exists()


def test_malformed_purchases_fail_the_job(spark, tmp_path):
    bad = (PURCHASES_HEADER + "\n536365,85123A,X,6,2010-12-01 08:26:00,not-a-price,17850,UK\n").encode()
    uri = write_bytes(tmp_path / "bad.csv", bad)
    with pytest.raises(Exception, match="(?i)malformed|FAILFAST"):
        user_behavior.read_purchases(spark, uri).collect()
    wrong_header = ("invoice_number,stock_code,quantity,detail,invoice_date,unit_price,customer_id,country\n").encode()
    uri = write_bytes(tmp_path / "hdr.csv", wrong_header + b"1,2,3,4,2010-12-01 08:26:00,1.000,5,UK\n")
    with pytest.raises(Exception, match="CSV header does not conform to the schema"):
        user_behavior.read_purchases(spark, uri).collect()


def test_purchases_with_bom_and_crlf(spark, tmp_path):
    body = b"\xef\xbb\xbf" + purchases_csv().replace(b"\n", b"\r\n")
    uri = write_bytes(tmp_path / "p.csv", body)
    df = user_behavior.read_purchases(spark, uri)
    assert df.count() == N_PURCHASES
    detail = df.filter(F.col("invoice_number") == "536367").first()["detail"]
    assert detail.replace("\r\n", "\n") == 'CREAM CUPID, "HEARTS"\nCOAT HANGER'


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-24T21:40:00Z", "2026-11-24T21:40:00+00:00"),
        ("2026-11-24T21:40:00+00:00", "2026-11-24T21:40:00+00:00"),
        ("2026-11-24T22:40:00+01:00", "2026-11-24T21:40:00+00:00"),
        ("2026-11-24T21:40:00.123456Z", "2026-11-24T21:40:00.123456+00:00"),
        ("2026-11-24T21:40:00", "2026-11-24T21:40:00+00:00"),
    ],
)
def test_parse_insert_date(text, expected):
    assert user_behavior.parse_insert_date(text).isoformat() == expected


def test_arguments(capsys):
    with pytest.raises(argparse.ArgumentTypeError):
        user_behavior.parse_insert_date("yesterday")
    base = ["--purchases", "gs://b/p.csv", "--reviews", "gs://b/r", "--output", "gs://b/o", "--metrics", "gs://b/m"]
    with pytest.raises(SystemExit):
        user_behavior.parse_args(base)  # --insert-date missing
    with pytest.raises(SystemExit):
        user_behavior.parse_args(base + ["--insert-date", "not a date"])
    args = user_behavior.parse_args(base + ["--insert-date", INSERT_DATE])
    assert args.insert_date == dt.datetime(2026, 11, 24, 21, 40, tzinfo=dt.timezone.utc)
    assert (args.purchases, args.reviews, args.output, args.metrics) == (
        "gs://b/p.csv",
        "gs://b/r",
        "gs://b/o",
        "gs://b/m",
    )


def test_pipeline_tokenizer_then_user_behavior(spark, tmp_path):
    """Both main()s chained on files, as the CLI runs them."""
    reviews_csv = write_bytes(
        tmp_path / "movie_review.csv",
        b"\xef\xbb\xbfcid,review_str,id_review\r\n"
        b'100,Good,a\r\n100,goods,b\r\n400,"not good, <br />really",c\r\nbad,good,d\r\n',
    )
    reviews_out = tmp_path / "reviews"
    tokenizer.main(
        [
            "--input",
            reviews_csv,
            "--output",
            file_uri(reviews_out),
            "--rejects",
            file_uri(tmp_path / "rejects"),
            "--metrics",
            file_uri(tmp_path / "tok_metrics"),
        ],  # fmt: skip
        spark=spark,
    )
    purchases = write_bytes(tmp_path / "user_purchase.csv", purchases_csv())
    out, metrics_dir = run_main(spark, tmp_path, purchases, file_uri(reviews_out))
    got = as_dict(spark.read.parquet(file_uri(out)))
    assert got[100] == (Decimal("13.015"), 2, 1)
    assert got[400] == (Decimal("0.000"), 1, 1)
    assert set(got) == {100, 200, 300, 400, 500}
    assert read_metrics(metrics_dir) == {"purchases_read": N_PURCHASES, "reviews_read": 3, "rows_written": 5}


def test_empty_inputs(spark, tmp_path):
    purchases = write_bytes(tmp_path / "p.csv", (PURCHASES_HEADER + "\n").encode())
    reviews_dir = tmp_path / "reviews"
    spark.createDataFrame([], tokenizer.OUTPUT_SCHEMA).write.mode("overwrite").parquet(file_uri(reviews_dir))
    out, metrics_dir = run_main(spark, tmp_path, purchases, file_uri(reviews_dir))
    result = spark.read.parquet(file_uri(out))
    assert result.count() == 0
    assert [f.name for f in result.schema.fields] == [f.name for f in user_behavior.OUTPUT_SCHEMA.fields]
    assert read_metrics(metrics_dir) == {"purchases_read": 0, "reviews_read": 0, "rows_written": 0}
