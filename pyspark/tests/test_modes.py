"""The two ways the same scripts run, end to end, as separate processes:

* as on Dataproc: ``spark-submit script.py ...`` with no ``SPARK_REMOTE``, so
  ``SparkSession.builder.getOrCreate()`` starts a classic session;
* as on the local target: ``python script.py ...`` with ``SPARK_REMOTE`` (and a
  token) pointing at a Spark Connect server started like infra starts it.

Both must write the same rows and the same metrics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import JOBS_DIR, file_uri, read_metrics, write_bytes

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
TOKEN = "test-token-for-the-connect-server"

REVIEWS = (
    b"\xef\xbb\xbfcid,review_str,id_review\r\n"
    b'100,Good,a\r\n100,goods,b\r\n400,"not good, <br />really",c\r\nbad,good,d\r\n'
    b"7,too,many,e\r\n8,caf\xe9,f\r\n"
)
PURCHASES = (
    "invoice_number,stock_code,detail,quantity,invoice_date,unit_price,customer_id,country\n"
    "536365,85123A,X,6,2010-12-01 08:26:00,2.550,100,UK\n"
    "536366,85123B,,-1,2010-12-01 08:27:00,0.005,200,\n"
    "536367,85123C,Y,3,2010-12-01 08:28:00,1.000,,UK\n"
).encode()


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def env(**extra: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYTHONPATH")}
    base.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    base.update(extra)
    return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    cmd = [
        str(spark_home() / "bin/spark-submit"),
        "--class", SERVER_CLASS,
        "--master", "local[2]",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.ui.enabled=false",
    ]  # fmt: skip
    with open(log, "wb") as out:
        server = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env(SPARK_CONNECT_AUTHENTICATE_TOKEN=TOKEN)
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(60)


def run_both_jobs(tmp_path: Path, launch) -> dict:
    reviews = write_bytes(tmp_path / "movie_review.csv", REVIEWS)
    purchases = write_bytes(tmp_path / "user_purchase.csv", PURCHASES)
    out = {name: file_uri(tmp_path / name) for name in ("reviews", "rejects", "tok", "ub", "ub_metrics")}
    launch("tokenizer.py", "--input", reviews, "--output", out["reviews"], "--rejects", out["rejects"],
           "--metrics", out["tok"])  # fmt: skip
    launch("user_behavior.py", "--purchases", purchases, "--reviews", out["reviews"], "--output", out["ub"],
           "--insert-date", "2026-11-24T21:40:00Z", "--metrics", out["ub_metrics"])  # fmt: skip
    import pyarrow.parquet as pq

    def table(name):
        rows = pq.read_table(tmp_path / name).to_pylist()
        return sorted(rows, key=lambda r: tuple(str(v) for v in r.values()))

    return {
        "reviews": table("reviews"),
        "user_behavior": table("ub"),
        "tokenizer_metrics": read_metrics(tmp_path / "tok"),
        "user_behavior_metrics": read_metrics(tmp_path / "ub_metrics"),
    }


def test_the_scripts_give_the_same_results_under_spark_submit_and_spark_connect(tmp_path, connect_server):
    def submit(script, *args):  # as Dataproc runs them
        cmd = [str(spark_home() / "bin/spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false"]
        subprocess.run([*cmd, str(JOBS_DIR / script), *args], check=True, env=env(SPARK_HOME=str(spark_home())))

    def connect(script, *args):  # as infra runs them locally
        remote = env(SPARK_REMOTE=f"sc://localhost:{connect_server}", SPARK_CONNECT_AUTHENTICATE_TOKEN=TOKEN)
        subprocess.run([sys.executable, str(JOBS_DIR / script), *args], check=True, env=remote)

    classic = run_both_jobs(tmp_path / "classic", submit)
    remote = run_both_jobs(tmp_path / "connect", connect)
    assert remote == classic
    assert classic["tokenizer_metrics"] == {"rows_read": 6, "rows_written": 3, "rows_rejected": 3}
    assert classic["user_behavior_metrics"] == {"purchases_read": 3, "reviews_read": 3, "rows_written": 3}


def test_the_connect_server_refuses_a_client_without_the_token(tmp_path, connect_server):
    remote = env(SPARK_REMOTE=f"sc://localhost:{connect_server}", SPARK_CONNECT_AUTHENTICATE_TOKEN="wrong")
    probe = "from pyspark.sql import SparkSession; SparkSession.builder.getOrCreate().range(1).collect()"
    result = subprocess.run([sys.executable, "-c", probe], env=remote, capture_output=True, text=True)
    assert result.returncode != 0
    assert "UNAUTHENTICATED" in result.stderr or "authentication" in result.stderr.lower(), result.stderr[-2000:]
