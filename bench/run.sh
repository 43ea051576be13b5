#!/usr/bin/env bash
# The performance benchmark: infra against reference runs in the same
# invocation, on generated data, written to bench/results.md.
#
#   bench/run.sh [--scale 1|10] [--runs N] [--quick]
#                                               defaults: scale 1, 5 runs
#
# --quick leaves out the two Spark comparisons (the reference jobs and the
# first run after `up`), which at scale 10 take most of an hour on two
# shared cores; it still times whole runs (for the scaling table), steps 0
# and 1 against psql, and peak memory.
#
# Each figure is a median of whole-process wall times (hyperfine) and a
# ratio against its reference, measured here and now: these machines are
# shared, so only ratios carry over.
#
#   whole run, warm     `infra run --data` after one warm-up run
#   first run           `infra run --data` right after `infra down; infra up`
#   reference           the original's job shape: two spark-submits, no
#                       validation (bench/reference/)
#   step 0              `infra run --only 0` against psql `\copy … FROM … CSV
#                       HEADER` of the same (valid) rows into an equal table
#                       on a separate PostgreSQL server with default settings
#   step 1              `infra run --only 1` against psql `\copy (SELECT …) TO`
#                       (the target), and against psql `COPY (SELECT …) TO`
#                       a file, written by the server as infra's dump is
#   peak RSS            of the infra process alone (VmHWM, sampled), and of
#                       infra with the children it waits for (/usr/bin/time -v)
#
# The raw numbers go to bench/results/scale-<S>.json; bench/results.md is
# rebuilt from every scale measured so far.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=1
runs=5
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "usage: bench/run.sh [--scale 1|10] [--runs N] [--quick]" >&2; exit 2 ;;
  esac
done
source scripts/setup.sh
command -v hyperfine >/dev/null || { say "hyperfine is missing: apt-get install hyperfine (SETUP_DEV=1 scripts/setup.sh installs it)"; exit 1; }
[ -x /usr/bin/time ] || { say "/usr/bin/time is missing: apt-get install time"; exit 1; }

# --all-targets: the same feature set as `cargo test`, so no dependency is rebuilt.
cargo build --quiet --all-targets "${INFRA_CARGO_ARGS[@]}"
infra="$CARGO_TARGET_DIR/debug/infra"
work=$(mktemp -d /tmp/infra-bench-XXXXXX)
chmod 755 "$work"
state="$work/state"
data="$work/data"
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
cleanup() {
  "$infra" --state-dir "$state" down --yes >/dev/null 2>&1 || true
  [ -d "$work/refpg" ] && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/refpg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
i() { "$infra" --state-dir "$state" "$@"; }

say "scale $scale: sample data, infra up, one warm-up run"
"$infra" sample --out "$data" --scale "$scale" 2>/dev/null
i up >/dev/null 2>&1
i run --data "$data" >/dev/null 2>&1

say "the reference PostgreSQL server (default settings) on its own port"
mkdir -p "$work/refpg"
[ "${#as_pg[@]}" -gt 0 ] && chown postgres "$work/refpg"
"${as_pg[@]}" "$pgbin/initdb" -D "$work/refpg/data" -U bench --auth=trust --encoding=UTF8 --locale=C >/dev/null
refport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/refpg/data" -l "$work/refpg/log" -w \
  -o "-p $refport -k $work/refpg -c listen_addresses=127.0.0.1" start >/dev/null
psql_ref=(psql -q -X -h 127.0.0.1 -p "$refport" -U bench -d postgres -v ON_ERROR_STOP=1)
"${psql_ref[@]}" -f sql/create_schema.sql
# psql loads the rows infra accepted (its own dump), so both load the same data.
cp "$state/staging/user_purchase.csv" "$work/valid.csv"
cols="invoice_number, stock_code, detail, quantity, invoice_date, unit_price, customer_id, country"
psql_load="${psql_ref[*]} -1 -c 'TRUNCATE bootcampdb.user_purchase' -c \"\\copy bootcampdb.user_purchase ($cols) FROM '$work/valid.csv' WITH (FORMAT csv, HEADER true)\""
psql_dump="${psql_ref[*]} -c \"\\copy (SELECT $cols FROM bootcampdb.user_purchase) TO '$work/dump.csv' WITH (FORMAT csv, HEADER true)\""
# The server writes where it may: its own directory (postgres's, as root).
psql_dump_server="${psql_ref[*]} -c \"COPY (SELECT $cols FROM bootcampdb.user_purchase) TO '$work/refpg/dump.csv' WITH (FORMAT csv, HEADER true)\""
eval "$psql_load"

venv=$(ls -d "$HOME"/.cache/infra/pyspark-venv-* | while read -r v; do [ -f "$v/.infra-ready" ] && echo "$v"; done | head -1)
spark_home=$(cat "$venv/.infra-ready")
reference="bench/reference/run.sh $spark_home $venv/bin/python $data/movie_review.csv $work/valid.csv $work"

hf() {
  hyperfine --style basic --export-json "$@" >"$work/hf.log" 2>&1 || { cat "$work/hf.log"; exit 1; }
  grep -E 'Benchmark|Time' "$work/hf.log"
}
if [ "$quick" = 1 ]; then
  say "whole run, warm (--quick: no reference jobs, no first run after up)"
  hf "$work/run.json" --runs "$runs" -n infra "$infra --state-dir $state run --data $data"
else
  say "whole run, warm, against the reference jobs"
  # The run above was the warm-up.
  hf "$work/run.json" --runs "$runs" \
    -n infra "$infra --state-dir $state run --data $data" \
    -n reference "$reference"
  say "the first run after up"
  hf "$work/first.json" --runs 3 \
    --prepare "$infra --state-dir $state down --yes; $infra --state-dir $state up" \
    -n infra-first "$infra --state-dir $state run --data $data"
fi
say "step 0 against psql \\copy"
hf "$work/load.json" --warmup 1 --runs "$runs" \
  -n infra-step0 "$infra --state-dir $state run --only 0" \
  -n psql-copy-in "$psql_load"
say "step 1 against psql \\copy"
hf "$work/dump.json" --warmup 1 --runs "$runs" \
  -n infra-step1 "$infra --state-dir $state run --only 1" \
  -n psql-copy-out "$psql_dump" \
  -n psql-copy-out-server "$psql_dump_server"

say "peak memory of infra during run"
"$infra" --state-dir "$state" run --data "$data" >/dev/null 2>&1 &
pid=$!
hwm=0
while kill -0 "$pid" 2>/dev/null; do
  v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$v" ] && hwm=$v
  sleep 0.05
done
wait "$pid"
/usr/bin/time -v "$infra" --state-dir "$state" run --data "$data" 2>"$work/time.txt" >/dev/null
with_children=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")

mkdir -p bench/results
python3 bench/report.py --scale "$scale" --runs "$runs" --dir "$work" \
  --hwm-kb "$hwm" --with-children-kb "$with_children" \
  --rows "$(( $("${psql_ref[@]}" -tAc 'SELECT count(*) FROM bootcampdb.user_purchase') + 1 ))" --out "bench/results/scale-$scale.json"
python3 bench/report.py --render bench/results --out bench/results.md
say "wrote bench/results.md"
cat bench/results.md
