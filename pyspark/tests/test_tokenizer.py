"""Contract tests of pyspark/tokenizer.py (step 2)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

import tokenizer
from conftest import file_uri, read_metrics, single_part_file, write_bytes

HEADER = b"cid,review_str,id_review"

# review text -> expected positive_review
POSITIVE = [
    "Good",
    "GOOD!",
    "not good",
    "good's",
    "<br />good",
    "very-good",
    "good",
    "It was good.",
    "good\nmovie",
    "(good)",
    "Good,bad",
    "123 good 456",
    "good-good",
    "<p>GOOD</p>",
    "tab\tgood",
    "très good",  # non-ASCII letters are separators for Java's \W, "good" stays whole
    "好 good",
    "goodé",  # -> "good", "" : Java's \W is ASCII-only, é splits
    "naïve but GoOd",
    "&quot;good&quot;",
    "the movie was good, the end",
]
NOT_POSITIVE = [
    "goods",
    "goodness",
    "good_movie",
    "goodbye",
    "good1",
    "1good",
    "very_good",
    "g o o d",
    "go od",
    "bad",
    "göod",
    "",
    None,
    "   ",
    "<br />",
    "not goooood",
]


def classify(spark, reviews):
    rows = [(i, text, f"r{i}") for i, text in enumerate(reviews)]
    df = spark.createDataFrame(rows, "cid int, review_str string, id_review string")
    out = {r["id_review"]: r["positive_review"] for r in tokenizer.classify_reviews(df).collect()}
    return [out[f"r{i}"] for i in range(len(reviews))]


def test_positive_examples(spark):
    got = classify(spark, POSITIVE)
    wrong = [text for text, flag in zip(POSITIVE, got, strict=True) if flag != 1]
    assert wrong == []


def test_not_positive_examples(spark):
    got = classify(spark, NOT_POSITIVE)
    wrong = [text for text, flag in zip(NOT_POSITIVE, got, strict=True) if flag != 0]
    assert wrong == []


def test_classify_output_schema_and_no_python_udf(spark):
    df = spark.createDataFrame([(1, "good", "a")], "cid int, review_str string, id_review string")
    out = tokenizer.classify_reviews(df)
    assert out.schema.simpleString() == "struct<cid:int,id_review:string,positive_review:int>"
    plan = out._jdf.queryExecution().executedPlan().toString()
    assert "Python" not in plan and "ArrowEval" not in plan, plan


def test_stop_words_are_removed_like_the_original_job(spark):
    df = spark.createDataFrame([(1, "This is NOT a good movie", "a")], "cid int, review_str string, id_review string")
    text = df.withColumn("review_text", F.lower("review_str"))
    tok = tokenizer.RegexTokenizer(inputCol="review_text", outputCol="review_token", pattern="\\W")
    rem = tokenizer.StopWordsRemover(inputCol="review_token", outputCol="review_clean", locale="en_US")
    tokens = rem.transform(tok.transform(text)).first()["review_clean"]
    assert tokens == ["good", "movie"]


def csv_file(tmp_path, body: bytes, *, bom=False, name="movie_review.csv"):
    data = (b"\xef\xbb\xbf" if bom else b"") + body
    return write_bytes(tmp_path / name, data)


def read_split(spark, uri):
    raw = tokenizer.read_raw_reviews(spark, uri)
    valid, rejected = tokenizer.split_reviews(raw)
    return raw, valid, rejected


def test_bom_does_not_leak_into_first_column(spark, tmp_path):
    uri = csv_file(tmp_path, HEADER + b"\r\n1,good,a\r\n2,bad,b\r\n", bom=True)
    raw, valid, rejected = read_split(spark, uri)
    assert raw.columns[:3] == ["cid", "review_str", "id_review"]
    rows = raw.collect()
    assert [r["cid"] for r in rows] == ["1", "2"]  # header skipped, no "\ufeffcid" row
    assert all("\ufeff" not in (v or "") for r in rows for v in r)
    assert rejected.count() == 0
    assert sorted(r["cid"] for r in valid.collect()) == [1, 2]
    # The plain reader (no explicit schema) does not leak it either in Spark 4.3.
    plain = spark.read.options(header=True, multiLine=True, escape='"').csv(uri)
    assert plain.columns == ["cid", "review_str", "id_review"]


def test_header_is_validated(spark, tmp_path):
    uri = csv_file(tmp_path, b"id_review,cid,review_str\n1,2,good\n", bom=True)
    with pytest.raises(Exception, match="CSV header does not conform to the schema"):
        tokenizer.read_raw_reviews(spark, uri).collect()


def test_rfc4180_quoting_newlines_crlf_html(spark, tmp_path):
    body = (
        HEADER + b"\r\n"
        b'1,"Good, really ""good"" movie",a\r\n'
        b'2,"line one\r\nline two, good\r\n",b\r\n'
        b'3,"<br /><br />GOOD<br />",c\r\n'
        b'4,"no\nnewline ""good""-ish ending",d\r\n'
        b"5,,e\r\n"
        b'6,"",f\r\n'
        b"7,plain goodbye,g\r\n"
        b'8,"caf\xc3\xa9 \xe2\x80\x94 good \xf0\x9f\x8e\xac",h'  # no final newline
    )
    raw, valid, rejected = read_split(spark, csv_file(tmp_path, body, bom=True))
    assert rejected.count() == 0
    texts = {r["id_review"]: r["review_str"] for r in valid.collect()}
    assert texts["a"] == 'Good, really "good" movie'
    assert texts["b"].replace("\r\n", "\n") == "line one\nline two, good\n"
    assert texts["d"] == 'no\nnewline "good"-ish ending'
    assert texts["e"] is None
    assert texts["f"] in (None, "")
    assert texts["h"] == "café — good 🎬"
    flags = {r["id_review"]: r["positive_review"] for r in tokenizer.classify_reviews(valid).collect()}
    assert flags == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 0, "f": 0, "g": 0, "h": 1}
    # No stray \r on the last field of CRLF lines.
    assert all(not r["id_review"].endswith("\r") for r in valid.collect())


def test_wrong_field_count_is_exposed_as_corrupt_record(spark, tmp_path):
    """Spark 4.3, multiLine + PERMISSIVE: too few and too many fields both set the
    corrupt record column to the raw record (the other columns are filled as far
    as the fields go). Queries on the raw scan that reference only that column
    are refused, hence the cache in read_raw_reviews."""
    body = HEADER + b'\n1,good,a\n2,too,many,fields\n3,too few\n4\n5,"quoted, ""multi""\nline",x,y\n6,good,b,\n'
    uri = csv_file(tmp_path, body)
    uncached = spark.read.schema(tokenizer.RAW_SCHEMA).options(**tokenizer.CSV_READ_OPTIONS).csv(uri)
    with pytest.raises(Exception, match="QUERY_ONLY_CORRUPT_RECORD_COLUMN"):
        uncached.filter(F.col(tokenizer.CORRUPT_COLUMN).isNotNull()).count()

    raw, valid, rejected = read_split(spark, uri)
    corrupt = {r["cid"]: r[tokenizer.CORRUPT_COLUMN] for r in raw.collect()}
    assert corrupt["1"] is None
    assert corrupt["2"] == "2,too,many,fields"
    assert corrupt["3"] == "3,too few"
    assert corrupt["4"] == "4"
    assert corrupt["5"] == '5,"quoted, ""multi""\nline",x,y'
    assert corrupt["6"] == "6,good,b,"
    assert raw.filter(F.col(tokenizer.CORRUPT_COLUMN).isNotNull()).count() == 5

    rej = {r["cid"]: r for r in rejected.collect()}
    assert set(rej) == {"2", "3", "4", "5", "6"}
    assert {r["reason"] for r in rej.values()} == {tokenizer.REASON_FIELD_COUNT}
    assert rej["3"]["raw_record"] == "3,too few"
    assert [r["cid"] for r in valid.collect()] == [1]


VALID_CIDS = ["0", "-1", "+7", "007", "2147483647", "-2147483648", "-0"]
INVALID_CIDS = [
    "2147483648",
    "-2147483649",
    "99999999999999999999999",
    " 8",
    "8 ",
    "1.0",
    "1e3",
    "abc",
    "",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "0x10",
    "--1",
    "+",
    '"5\n"',
    '"5\r\n"',
    "1_000",
]


def test_cid_must_be_a_32_bit_integer(spark, tmp_path):
    lines = [f"{cid},good,v{i}" for i, cid in enumerate(VALID_CIDS)]
    lines += [f"{cid},good,x{i}" for i, cid in enumerate(INVALID_CIDS)]
    uri = csv_file(tmp_path, (HEADER.decode() + "\n" + "\n".join(lines) + "\n").encode("utf-8"))
    raw, valid, rejected = read_split(spark, uri)
    got_valid = {r["id_review"]: r["cid"] for r in valid.collect()}
    assert got_valid == {f"v{i}": int(c) for i, c in enumerate(VALID_CIDS)}
    rej = {r["id_review"]: r for r in rejected.collect()}
    assert set(rej) == {f"x{i}" for i in range(len(INVALID_CIDS))}
    assert {r["reason"] for r in rej.values()} == {tokenizer.REASON_BAD_CID}
    assert rej["x3"]["cid"] == " 8"  # kept verbatim
    assert rej["x8"]["cid"] is None  # empty cid reads as NULL


def run_main(spark, tmp_path, body: bytes, *, bom=False):
    src = csv_file(tmp_path, body, bom=bom)
    out, rejects, metrics = tmp_path / "out", tmp_path / "rejects", tmp_path / "metrics"
    argv = [
        "--input", src,
        "--output", file_uri(out),
        "--rejects", file_uri(rejects),
        "--metrics", file_uri(metrics),
    ]  # fmt: skip
    assert tokenizer.main(argv, spark=spark) == 0
    return out, rejects, metrics


MIXED = (
    HEADER + b"\r\n"
    b"1,Good movie,r1\r\n"
    b'2,"goods, goodness, goodbye",r2\r\n'
    b"3,,r3\r\n"
    b'4," not ""good"" at all ",r4\r\n'
    b"x5,good,r5\r\n"
    b" 6 ,good,r6\r\n"
    b"7,too,many,r7\r\n"
    b"8,too few\r\n"
    b"2147483648,good,r9\r\n"
    b'10,"multi\r\nline\r\n<br />good",r10\r\n'
)


def test_main_end_to_end(spark, tmp_path):
    out, rejects, metrics_dir = run_main(spark, tmp_path, MIXED, bom=True)

    result = spark.read.parquet(file_uri(out))
    assert result.schema.simpleString() == "struct<cid:int,id_review:string,positive_review:int>"
    assert result.dtypes == [("cid", "int"), ("id_review", "string"), ("positive_review", "int")]
    rows = sorted((r["cid"], r["id_review"], r["positive_review"]) for r in result.collect())
    assert rows == [(1, "r1", 1), (2, "r2", 0), (3, "r3", 0), (4, "r4", 1), (10, "r10", 1)]

    text = single_part_file(rejects, ".csv").read_text(encoding="utf-8")
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(records[0].keys()) == list(tokenizer.REJECT_COLUMNS)
    by_cid = {r["cid"]: r for r in records}
    assert set(by_cid) == {"x5", " 6 ", "7", "8", "2147483648"}
    assert by_cid["x5"]["reason"] == "cid is not a 32-bit integer"
    assert by_cid[" 6 "]["reason"] == "cid is not a 32-bit integer"
    assert by_cid["2147483648"]["reason"] == "cid is not a 32-bit integer"
    assert by_cid["7"]["reason"] == "wrong field count"
    assert by_cid["7"]["raw_record"] == "7,too,many,r7"
    assert by_cid["8"]["reason"] == "wrong field count"
    assert by_cid["8"]["raw_record"] == "8,too few"

    metrics = read_metrics(metrics_dir)
    assert metrics == {"rows_read": 10, "rows_written": 5, "rows_rejected": 5}
    assert all(type(v) is int for v in metrics.values())
    assert metrics["rows_read"] == metrics["rows_written"] + metrics["rows_rejected"]


def test_main_rerun_overwrites_and_invariant_holds(spark, tmp_path):
    run_main(spark, tmp_path, MIXED)
    body = HEADER + b"\n1,good,a\n2,bad,b\n3\n"
    out, rejects, metrics_dir = run_main(spark, tmp_path, body)
    assert spark.read.parquet(file_uri(out)).count() == 2
    records = list(csv.DictReader(io.StringIO(single_part_file(rejects, ".csv").read_text(), newline="")))
    assert [r["cid"] for r in records] == ["3"]
    assert read_metrics(metrics_dir) == {"rows_read": 3, "rows_written": 2, "rows_rejected": 1}


def test_main_without_rejects_writes_header_only_file(spark, tmp_path):
    out, rejects, metrics_dir = run_main(spark, tmp_path, HEADER + b"\n1,good,a\n")
    assert single_part_file(rejects, ".csv").read_text().strip() == ",".join(tokenizer.REJECT_COLUMNS)
    assert read_metrics(metrics_dir) == {"rows_read": 1, "rows_written": 1, "rows_rejected": 0}


def test_invariant_on_generated_file(spark, tmp_path):
    import random

    rnd = random.Random(42)
    words = ["good", "Good!", "bad", "goods", "not", "movie", "<br />", "very-good", "x,y", '"q"', "\n"]
    lines, expected_bad = [], 0
    for i in range(300):
        kind = rnd.random()
        text = " ".join(rnd.choice(words) for _ in range(rnd.randint(0, 6)))
        quoted = '"' + text.replace('"', '""') + '"'
        if kind < 0.1:
            line = f"{i},{quoted}"  # too few fields
        elif kind < 0.2:
            line = f"{i},{quoted},id{i},extra"  # too many fields
        elif kind < 0.3:
            line = f"c{i},{quoted},id{i}"  # cid not an integer
        else:
            line = f"{i},{quoted},id{i}"
        expected_bad += kind < 0.3
        lines.append(line)
    body = (HEADER.decode() + "\r\n" + "\r\n".join(lines) + "\r\n").encode("utf-8")
    out, rejects, metrics_dir = run_main(spark, tmp_path, body, bom=True)
    metrics = read_metrics(metrics_dir)
    assert metrics["rows_read"] == 300
    assert metrics["rows_rejected"] == expected_bad
    assert metrics["rows_read"] == metrics["rows_written"] + metrics["rows_rejected"]
    # The counts are those of the files actually written.
    assert spark.read.parquet(file_uri(out)).count() == metrics["rows_written"]
    records = list(csv.DictReader(io.StringIO(single_part_file(rejects, ".csv").read_text(), newline="")))
    assert len(records) == metrics["rows_rejected"]


def test_metrics_file_is_a_single_json_object(spark, tmp_path):
    _, _, metrics_dir = run_main(spark, tmp_path, HEADER + b"\n1,good,a\n")
    text = single_part_file(metrics_dir, ".json").read_text()
    assert list(json.loads(text).keys()) == ["rows_read", "rows_written", "rows_rejected"]


def test_arguments_are_required(capsys):
    with pytest.raises(SystemExit):
        tokenizer.parse_args(["--input", "file:///x"])
    args = tokenizer.parse_args(
        ["--input", "gs://b/in.csv", "--output", "gs://b/o", "--rejects", "gs://b/r", "--metrics", "gs://b/m"]
    )
    assert (args.input, args.output, args.rejects, args.metrics) == (
        "gs://b/in.csv",
        "gs://b/o",
        "gs://b/r",
        "gs://b/m",
    )


def test_values_are_read_verbatim_not_typed(spark, tmp_path):
    """Fields reach validation as the file's text: no number or date parsing,
    no trimming, leading zeros and signs kept (the cid check sees them)."""
    uri = csv_file(tmp_path, HEADER + b"\n007, 3.50 ,2020-01-01\n+1,1e3,  x  \n")
    raw = tokenizer.read_raw_reviews(spark, uri)
    rows = [(r["cid"], r["review_str"], r["id_review"]) for r in raw.collect()]
    assert rows == [("007", " 3.50 ", "2020-01-01"), ("+1", "1e3", "  x  ")]


def test_invalid_utf8_goes_to_the_rejects_with_its_reason(spark, tmp_path):
    """Regression (issue 13): Spark's UTF-8 reader replaced such bytes with
    U+FFFD and kept the row; now the row is rejected, as purchases are."""
    body = (
        HEADER + b"\r\n"
        b"1,good \xff bad,a\r\n"  # a stray byte
        b'2,"caf\xc3\xa9 good",b\r\n'  # valid two-byte UTF-8
        b'3,"cut \xe2\x82",c\r\n'  # a truncated sequence before the quote
        b"4,good,\xc0\xaf\r\n"  # an overlong encoding, in id_review
        b"\xed\xa0\x80,good,e\r\n"  # a surrogate, in cid
        b"6,\xef\xbf\xbd is a real U+FFFD,f\r\n"  # valid UTF-8 for U+FFFD itself
    )
    out, rejects, metrics_dir = run_main(spark, tmp_path, body, bom=True)
    valid = {r["id_review"]: r for r in spark.read.parquet(file_uri(out)).collect()}
    assert set(valid) == {"b", "f"}
    assert valid["b"]["positive_review"] == 1
    records = list(csv.DictReader(io.StringIO(single_part_file(rejects, ".csv").read_text(), newline="")))
    reasons = {r["id_review"] or r["cid"]: r["reason"] for r in records}
    assert reasons == {
        "a": "review_str is not valid UTF-8",
        "c": "review_str is not valid UTF-8",
        "\ufffd\ufffd": "id_review is not valid UTF-8",  # one U+FFFD per bad byte
        "e": "cid is not valid UTF-8",
    }, reasons
    # The record splits on the file's bytes: the truncated sequence did not eat the quote.
    assert next(r for r in records if r["id_review"] == "c")["review_str"] == "cut \ufffd"
    assert read_metrics(metrics_dir) == {"rows_read": 6, "rows_written": 2, "rows_rejected": 4}


@pytest.mark.parametrize("body", [b"", b"\n\r\n\n", b"\xef\xbb\xbf"], ids=["zero-bytes", "blank-lines", "bom-only"])
def test_an_empty_file_is_an_error(spark, tmp_path, body):
    """An empty review file is an error (no header), as an empty purchase file is."""
    with pytest.raises(ValueError, match="is empty: expected a header row `cid,review_str,id_review`"):
        run_main(spark, tmp_path, body)


def test_header_only_file(spark, tmp_path):
    out, rejects, metrics_dir = run_main(spark, tmp_path, HEADER + b"\r\n", bom=True)
    result = spark.read.parquet(file_uri(out))
    assert result.count() == 0
    assert result.schema.simpleString() == "struct<cid:int,id_review:string,positive_review:int>"
    assert read_metrics(metrics_dir) == {"rows_read": 0, "rows_written": 0, "rows_rejected": 0}


def test_blank_lines_are_not_records(spark, tmp_path):
    body = HEADER + b'\n\n1,good,a\n\n\n2,"\n\ngood",b\n\n'
    _, _, metrics_dir = run_main(spark, tmp_path, body)
    assert read_metrics(metrics_dir) == {"rows_read": 2, "rows_written": 2, "rows_rejected": 0}
