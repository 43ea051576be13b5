"""The original pipeline's step 2, as it was shaped: no validation, no rejects,
no metrics. A benchmark reference only (bench/run.sh); never run by infra.

    spark-submit tokenizer.py INPUT_CSV OUTPUT_DIR
"""

import sys

from pyspark.ml.feature import RegexTokenizer, StopWordsRemover
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

spark = SparkSession.builder.appName("reference-tokenizer").getOrCreate()
reviews = spark.read.options(header=True, multiLine=True, escape='"').csv(sys.argv[1])
# RegexTokenizer fails on NULL text, and the data has empty reviews.
reviews = reviews.na.fill({"review_str": ""})
words = RegexTokenizer(inputCol="review_str", outputCol="review_token", pattern="\\W").transform(reviews)
clean = StopWordsRemover(inputCol="review_token", outputCol="review_clean", locale="en_US").transform(words)
clean.select(
    # try_cast: the original ran on Spark 3 without ANSI mode, where a bad cid is NULL.
    F.expr("try_cast(cid AS INT)").alias("cid"),
    F.col("id_review"),
    F.array_contains("review_clean", "good").cast("int").alias("positive_review"),
).write.mode("overwrite").parquet(sys.argv[2])
spark.stop()
