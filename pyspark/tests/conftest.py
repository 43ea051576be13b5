"""Shared fixtures for the PySpark job tests.

One SparkSession (``local[1]``, one shuffle partition, no UI) serves the whole
run. The jobs are imported as plain modules from ``pyspark/`` (the directory
holding the scripts); there is deliberately no ``__init__.py`` in ``pyspark/``
so that it never shadows the real ``pyspark`` package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

JOBS_DIR = Path(__file__).resolve().parent.parent
if str(JOBS_DIR) not in sys.path:
    sys.path.insert(0, str(JOBS_DIR))

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("infra-pyspark-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def file_uri(path: Path) -> str:
    """``file:///abs/path`` as the jobs receive it."""
    return path.resolve().as_uri()


def write_bytes(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return file_uri(path)


def single_part_file(directory: Path, suffix: str) -> Path:
    parts = sorted(p for p in directory.iterdir() if p.name.startswith("part-") and p.name.endswith(suffix))
    assert len(parts) == 1, f"expected one part-*{suffix} in {directory}, found {parts}"
    return parts[0]


def read_metrics(directory: Path) -> dict:
    import json

    lines = single_part_file(directory, ".json").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])
