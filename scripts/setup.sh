# Sourced by scripts/demo and scripts/test: installs what infra and its tests
# need on a Debian machine with Rust, and exports the paths they share.
#
#   SETUP_DEV=1   also build the test venv (pytest, checkov, fake-gcs-server, ...)

set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/infra-target}"
export INFRA_TEST_VENV="${INFRA_TEST_VENV:-$HOME/.cache/infra/dev-venv}"

say() { printf '==> %s\n' "$*" >&2; }

# Every checkout shares one target dir, because the dependencies (bundled
# DuckDB above all) take long to build. But cargo gives this workspace's
# crates the same artifact names in every checkout and judges them fresh by
# file times, so another checkout's newer build can pass for this one's:
# tests would then run the other tree's code, and its paths. When the
# checkout changes, drop this workspace's artifacts, never the dependencies'.
checkout_stamp="$CARGO_TARGET_DIR/.infra-checkout"
checkout=$(pwd -P)
if [ "$(cat "$checkout_stamp" 2>/dev/null)" != "$checkout" ]; then
  if [ -d "$CARGO_TARGET_DIR/debug" ] || [ -d "$CARGO_TARGET_DIR/release" ]; then
    say "$CARGO_TARGET_DIR was last built from another checkout: rebuilding this workspace's crates"
    cargo clean --quiet -p infra -p gcp-fakes
  fi
  mkdir -p "$CARGO_TARGET_DIR"
  printf '%s\n' "$checkout" > "$checkout_stamp"
fi

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
if [ "${#need_apt[@]}" -gt 0 ]; then
  say "installing Debian packages: ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ "${SETUP_DEV:-0}" = 1 ]; then
  # bench/run.sh: hyperfine times whole processes, GNU time measures peak memory.
  dev_apt=()
  command -v hyperfine >/dev/null || dev_apt+=(hyperfine)
  [ -x /usr/bin/time ] || dev_apt+=(time)
  if [ "${#dev_apt[@]}" -gt 0 ]; then
    say "installing Debian packages for development: ${dev_apt[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${dev_apt[@]}" >/dev/null
  fi
  if ! command -v terraform >/dev/null; then
    say "terraform is not on PATH: the Terraform runner tests need it (https://developer.hashicorp.com/terraform/install)"
    exit 1
  fi
  stamp="$INFRA_TEST_VENV/.requirements"
  if ! cmp -s requirements-dev.txt "$stamp" 2>/dev/null || ! cmp -s pyspark/requirements.txt "$stamp.pyspark" 2>/dev/null; then
    say "building the test venv in $INFRA_TEST_VENV"
    rm -rf "$INFRA_TEST_VENV"
    python3 -m venv "$INFRA_TEST_VENV"
    "$INFRA_TEST_VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt "$stamp"
    cp pyspark/requirements.txt "$stamp.pyspark"
  fi
fi
