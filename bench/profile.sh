#!/usr/bin/env bash
# Which build profile scripts/demo should use: the dev build it uses now
# against the release build, both built cold and both run on the same state
# and data, in one invocation.
#
#   bench/profile.sh [--scale S] [--runs N]     defaults: scale 1, 5 runs
#
# Each build starts from its own empty target dir (the cargo registry stays
# warm, DuckDB is the prebuilt library when setup.sh finds it), so the build
# times are what a new user waits for compiling. Then hyperfine times step 0,
# step 1 and a whole warm run with each binary. Writes
# bench/results/profile.md, which bench/results.md includes.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=1
runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: bench/profile.sh [--scale S] [--runs N]" >&2; exit 2 ;;
  esac
done
source scripts/setup.sh
command -v hyperfine >/dev/null || { say "hyperfine is missing: apt-get install hyperfine"; exit 1; }

work=$(mktemp -d /tmp/infra-profile-XXXXXX)
chmod 755 "$work"
state="$work/state"
cleanup() {
  [ -x "$work/dev/debug/infra" ] && "$work/dev/debug/infra" --state-dir "$state" down --yes >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

build() { # profile target-dir -> seconds
  local start end
  start=$(date +%s.%N)
  CARGO_TARGET_DIR="$2" cargo build --quiet -p infra --bin infra $1 "${INFRA_CARGO_ARGS[@]}"
  end=$(date +%s.%N)
  python3 -c "print(round($end - $start, 1))"
}
say "cold dev build"
dev_build=$(build "" "$work/dev")
say "cold release build"
release_build=$(build --release "$work/release")
dev="$work/dev/debug/infra"
release="$work/release/release/infra"

say "scale $scale: sample data, up, one warm-up run"
"$dev" sample --out "$work/data" --scale "$scale" 2>/dev/null
"$dev" --state-dir "$state" up >/dev/null 2>&1
"$dev" --state-dir "$state" run --data "$work/data" >/dev/null 2>&1

hf() { # name args...
  local name=$1; shift
  hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$work/$name.json" \
    -n dev "$dev --state-dir $state $*" -n release "$release --state-dir $state $*" >"$work/hf.log" 2>&1 \
    || { cat "$work/hf.log"; exit 1; }
}
say "step 0";    hf step0 run --only 0
say "step 1";    hf step1 run --only 1
say "whole run"; hf run run --data "$work/data"

python3 - "$work" "$scale" "$runs" "$dev_build" "$release_build" "$(git rev-parse --short HEAD)" <<'PY' > bench/results/profile.md
import json, os, statistics, sys
work, scale, runs, dev_build, release_build, commit = sys.argv[1:]
def med(name):
    r = {x["command"]: statistics.median(x["times"]) for x in json.load(open(f"{work}/{name}.json"))["results"]}
    return r["dev"], r["release"]
rows = [("cold build of infra (s)", float(dev_build), float(release_build))]
rows += [(f"{what} (s)", *med(name)) for what, name in
         [("step 0: validate + load", "step0"), ("step 1: dump", "step1"), ("whole run, warm", "run")]]
print("## Build profile: dev against release\n")
print(f"`bench/profile.sh --scale {scale} --runs {runs}`: commit {commit}, {os.cpu_count()} cores, "
      f"load average {os.getloadavg()[0]:.2f} at the end; medians of {runs} runs; each build from an "
      "empty target dir with a warm cargo registry.\n")
print("| what | dev | release | release / dev |")
print("| --- | ---: | ---: | ---: |")
for what, d, r in rows:
    print(f"| {what} | {d:.2f} | {r:.2f} | {r / d:.2f} |")
PY
say "wrote bench/results/profile.md"
cat bench/results/profile.md
