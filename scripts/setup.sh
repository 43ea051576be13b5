# Sourced by scripts/demo and scripts/test: installs what infra and its tests
# need on a Debian machine with Rust, and exports the paths they share.
#
#   SETUP_DEV=1   also build the test venv (pytest, checkov, fake-gcs-server, ...)
#                 and the Airflow venv (requirements-airflow.txt), and install
#                 cargo-deny (scripts/deny)

set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/infra-target}"
export INFRA_TEST_VENV="${INFRA_TEST_VENV:-$HOME/.cache/infra/dev-venv}"
export INFRA_AIRFLOW_VENV="${INFRA_AIRFLOW_VENV:-$HOME/.cache/infra/airflow-venv}"

say() { printf '==> %s\n' "$*" >&2; }

# Every checkout shares one target dir, because the dependencies (bundled
# DuckDB above all) take long to build. But cargo gives this workspace's
# crates the same artifact names in every checkout and judges them fresh by
# file times, so another checkout's newer build can pass for this one's:
# tests would then run the other tree's code, and its paths. When the
# checkout changes, drop this workspace's artifacts, never the dependencies'.
claim_target_dir() {
  local dir=$1 stamp="$1/.infra-checkout" checkout
  checkout=$(pwd -P)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$checkout" ]; then
    if [ -d "$dir/debug" ] || [ -d "$dir/release" ]; then
      say "$dir was last built from another checkout: rebuilding this workspace's crates"
      CARGO_TARGET_DIR="$dir" cargo clean --quiet -p infra -p gcp-fakes
      # scripts/demo's release build.
      [ ! -d "$dir/release" ] || CARGO_TARGET_DIR="$dir" cargo clean --quiet --release -p infra -p gcp-fakes
    fi
    mkdir -p "$dir"
    printf '%s\n' "$checkout" > "$stamp"
  fi
}
claim_target_dir "$CARGO_TARGET_DIR"

need_apt=()
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
java_major=$(java --version 2>/dev/null | awk 'NR==1 {split($2, v, "."); print v[1]}' || true)
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  need_apt+=(openjdk-17-jre-headless)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ "${SETUP_DEV:-0}" = 1 ]; then
  # The report's browser test and the progress test's terminal.
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v tmux >/dev/null || need_apt+=(tmux)
  # bench/run.sh: hyperfine times whole processes, GNU time measures peak memory.
  command -v hyperfine >/dev/null || need_apt+=(hyperfine)
  [ -x /usr/bin/time ] || need_apt+=(time)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  say "installing Debian packages: ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# DuckDB. Compiling it from source (the crate's `bundled-duckdb` feature)
# takes ~20 minutes on 2 cores, nearly all of a first run. Where it fits,
# link the prebuilt libduckdb.so that DuckDB's npm package ships instead:
# the same release the pinned duckdb crate binds, Parquet built in. Other
# platforms, no npm, a version mismatch, or INFRA_DUCKDB=bundled build it.
# Scripts pass "${INFRA_CARGO_ARGS[@]}" to every cargo command.
duckdb_release=1.5.6
duckdb_npm="@duckdb/node-bindings-linux-x64@$duckdb_release-r.1"
duckdb_sha256=3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633
INFRA_CARGO_ARGS=()

# The DuckDB release the locked libduckdb-sys binds: 1.MMmmpp.x is M.m.p.
locked_duckdb() {
  awk '/^name = "libduckdb-sys"$/ { getline; gsub(/"/, "", $3); split($3, v, "."); n = v[2] + 0;
       printf "%d.%d.%d\n", n / 10000, (n / 100) % 100, n % 100 }' Cargo.lock
}

prebuilt_duckdb() {
  [ "${INFRA_DUCKDB:-prebuilt}" = prebuilt ] || { echo "INFRA_DUCKDB=${INFRA_DUCKDB}"; return 1; }
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "no prebuilt library for $(uname -s)-$(uname -m)"; return 1; }
  getconf GNU_LIBC_VERSION >/dev/null 2>&1 || { echo "the prebuilt library needs glibc"; return 1; }
  local locked
  locked=$(locked_duckdb)
  [ "$locked" = "$duckdb_release" ] || { echo "Cargo.lock binds DuckDB $locked, the prebuilt library is $duckdb_release"; return 1; }
  local dir="${INFRA_CACHE_DIR:-$HOME/.cache/infra}/libduckdb/$duckdb_release"
  if ! echo "$duckdb_sha256  $dir/libduckdb.so" | sha256sum --check --status 2>/dev/null; then
    command -v npm >/dev/null || { echo "npm is not installed"; return 1; }
    say "fetching the prebuilt DuckDB $duckdb_release ($duckdb_npm)"
    local tmp
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && npm pack --silent "$duckdb_npm" >/dev/null 2>&1 && tar -xzf ./*.tgz package/libduckdb.so); then
      rm -rf "$tmp"; echo "npm pack $duckdb_npm failed"; return 1
    fi
    if ! echo "$duckdb_sha256  $tmp/package/libduckdb.so" | sha256sum --check --status; then
      rm -rf "$tmp"; echo "libduckdb.so from $duckdb_npm has an unexpected checksum"; return 1
    fi
    mkdir -p "$dir"
    mv "$tmp/package/libduckdb.so" "$dir/libduckdb.so"
    rm -rf "$tmp"
  fi
  echo "$dir"
}

if duckdb_dir=$(prebuilt_duckdb); then
  export DUCKDB_LIB_DIR="$duckdb_dir"
  INFRA_CARGO_ARGS=(--no-default-features)
else
  unset DUCKDB_LIB_DIR
  say "building DuckDB from source, about 20 minutes the first time ($duckdb_dir)"
fi

if [ "${SETUP_DEV:-0}" = 1 ]; then
  if ! command -v terraform >/dev/null; then
    say "terraform is not on PATH: the Terraform runner tests need it (https://developer.hashicorp.com/terraform/install)"
    exit 1
  fi
  # The test venv (pytest, checkov, fake-gcs-server, pyspark: mostly a
  # download) builds in the background while cargo-deny compiles.
  venv_pid=""
  stamp="$INFRA_TEST_VENV/.requirements"
  if ! cmp -s requirements-dev.txt "$stamp" 2>/dev/null || ! cmp -s pyspark/requirements.txt "$stamp.pyspark" 2>/dev/null; then
    say "building the test venv in $INFRA_TEST_VENV"
    (
      rm -rf "$INFRA_TEST_VENV"
      python3 -m venv "$INFRA_TEST_VENV"
      "$INFRA_TEST_VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
      cp requirements-dev.txt "$stamp"
      cp pyspark/requirements.txt "$stamp.pyspark"
    ) &
    venv_pid=$!
  fi
  # Real Airflow for the DAG tests: the frozen resolution, installed as is
  # (--no-deps: every package is pinned there). About 2.5 minutes and
  # 2.2 GB cold, once per machine, also in the background; rebuilt when
  # the lock file changes.
  airflow_pid=""
  if ! cmp -s requirements-airflow.txt "$INFRA_AIRFLOW_VENV/.requirements" 2>/dev/null; then
    say "building the Airflow venv in $INFRA_AIRFLOW_VENV (a few minutes, once)"
    (
      rm -rf "$INFRA_AIRFLOW_VENV"
      python3 -m venv "$INFRA_AIRFLOW_VENV"
      "$INFRA_AIRFLOW_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-airflow.txt
      cp requirements-airflow.txt "$INFRA_AIRFLOW_VENV/.requirements"
    ) &
    airflow_pid=$!
  fi
  # scripts/deny: cargo-deny from crates.io, pinned because deny.toml and its
  # flags follow its version. Built once. Its release profile asks for fat
  # LTO in one codegen unit, most of a 5-minute cold install on 2 cores;
  # a lint that reads one lock file needs neither, so they are turned off.
  cargo_deny=0.20.2
  if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $cargo_deny" ]; then
    say "installing cargo-deny $cargo_deny (cargo install, a few minutes, once)"
    env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      cargo install --locked --quiet "cargo-deny@$cargo_deny"
  fi
  if [ -n "$venv_pid" ] && ! wait "$venv_pid"; then
    say "building the test venv in $INFRA_TEST_VENV failed (pip's output is above)"
    exit 1
  fi
  if [ -n "$airflow_pid" ] && ! wait "$airflow_pid"; then
    say "building the Airflow venv in $INFRA_AIRFLOW_VENV failed (pip's output is above)"
    exit 1
  fi
fi
