"""The original pipeline's step 3, as it was shaped: read the purchase dump and
the reviews, group both, full outer join, write. No checks or metrics. A
benchmark reference only (bench/run.sh); never run by infra.

    spark-submit user_behavior.py PURCHASES_CSV REVIEWS_DIR OUTPUT_DIR
"""

import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

spark = SparkSession.builder.appName("reference-user-behavior").getOrCreate()
purchases = spark.read.options(header=True, multiLine=True, escape='"', inferSchema=False).csv(sys.argv[1])
reviews = spark.read.parquet(sys.argv[2])
p = purchases.groupBy(F.expr("try_cast(customer_id AS BIGINT)").alias("customer_id")).agg(
    F.sum(F.expr("try_cast(quantity AS INT) * try_cast(unit_price AS DECIMAL(8,3))")).alias("amount_spent")
)
r = reviews.groupBy(F.col("cid").cast("bigint").alias("cid")).agg(
    F.count(F.lit(1)).alias("review_count"), F.sum("positive_review").alias("review_score")
)
p.join(r, p.customer_id == r.cid, "full_outer").select(
    F.coalesce("customer_id", "cid").alias("customer_id"),
    F.coalesce("amount_spent", F.lit(0)).alias("amount_spent"),
    F.coalesce("review_count", F.lit(0)).alias("review_count"),
    F.coalesce("review_score", F.lit(0)).alias("review_score"),
    F.current_timestamp().alias("insert_date"),
).write.mode("overwrite").parquet(sys.argv[3])
spark.stop()
