#!/usr/bin/env bash
# Step 0 throughput against the reference: psql's \copy of the same rows
# into the same PostgreSQL server, in the same invocation.
#
#   bench/load.sh [SCALE] [RUNS]     defaults: 1 (541,909 rows), 3
#
# Prints each run's wall time and the ratio infra/psql (lower is better).
# infra validates every row and writes rejects; psql loads the rows blind.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
scale="${1:-1}"
runs="${2:-3}"

cargo build --quiet "${INFRA_CARGO_ARGS[@]}"
infra="$CARGO_TARGET_DIR/debug/infra"
work=$(mktemp -d /tmp/infra-bench-XXXXXX)
chmod 755 "$work"
trap '"$infra" --state-dir "$work/state" down --yes >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

"$infra" sample --out "$work/data" --scale "$scale" 2>/dev/null
"$infra" --state-dir "$work/state" up >/dev/null 2>&1
"$infra" --state-dir "$work/state" run --data "$work/data" --only 0 >/dev/null 2>&1

port=$(sed -n 's/^port = //p' "$work/state/postgres/data/infra.conf")
export PGPASSWORD=$(cat "$work/state/postgres.password")
psql=(psql -q -h 127.0.0.1 -p "$port" -U bootcamp -d bootcampdb -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE TABLE IF NOT EXISTS bench_copy (LIKE bootcampdb.user_purchase)"
# psql gets the rows infra accepted, dumped by step 1, so both load the same data.
"$infra" --state-dir "$work/state" run --only 1 >/dev/null 2>&1

now() { date +%s.%N; }
times=()
for i in $(seq "$runs"); do
  t0=$(now)
  "$infra" --state-dir "$work/state" run --only 0 >/dev/null 2>&1
  t1=$(now)
  "${psql[@]}" -c "BEGIN" -c "TRUNCATE bench_copy" \
    -c "\copy bench_copy FROM '$work/state/staging/user_purchase.csv' WITH (FORMAT csv, HEADER true)" -c "COMMIT"
  t2=$(now)
  times+=("$t0 $t1 $t2")
done
rows=$("${psql[@]}" -tAc "SELECT count(*) FROM bench_copy")
printf '%s\n' "${times[@]}" | awk -v rows="$rows" '
  { ti = $2 - $1; tp = $3 - $2; si += ti; sp += tp
    printf "run %d: infra %.3fs  psql \\copy %.3fs\n", NR, ti, tp }
  END { printf "rows loaded: %d\ninfra mean %.3fs (%.0f rows/s), psql mean %.3fs (%.0f rows/s), ratio infra/psql %.2f\n",
        rows, si / NR, rows * NR / si, sp / NR, rows * NR / sp, si / sp }'
