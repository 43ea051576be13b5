#!/usr/bin/env bash
# The original pipeline's Spark work, shaped as it was: each job in its own
# spark-submit, no validation. bench/run.sh times this as the reference.
#   bench/reference/run.sh SPARK_HOME PYTHON REVIEWS_CSV PURCHASES_CSV WORK_DIR
set -euo pipefail
spark_home=$1 python=$2 reviews=$3 purchases=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
export SPARK_HOME="$spark_home" PYSPARK_PYTHON="$python" PYSPARK_DRIVER_PYTHON="$python" SPARK_LOCAL_IP=127.0.0.1
submit=("$spark_home/bin/spark-submit" --master 'local[*]' --driver-memory 2g --conf spark.ui.enabled=false)
"${submit[@]}" "$here/tokenizer.py" "$reviews" "$work/ref-reviews" 2>/dev/null
"${submit[@]}" "$here/user_behavior.py" "$purchases" "$work/ref-reviews" "$work/ref-user-behavior" 2>/dev/null
