#!/usr/bin/env bash
# Vigil's whole test suite, as CI runs it: installs what the tests need when it
# is missing (Debian 12 packages), starts real ClickHouse, MariaDB and Redis on
# private ports under a temp dir, runs the lints and every test, and stops what
# it started — also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo not found; install Rust 1.89+ (https://rustup.rs) first" >&2
  exit 1
fi

# Binary → Debian package that provides it.
declare -A NEEDED=(
  [clickhouse-server]=clickhouse-server
  [clickhouse-client]=clickhouse-client
  [mariadbd]=mariadb-server
  [mariadb]=mariadb-client
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [curl]=curl
  [socat]=socat
  [python3]=python3
  [clang]=clang
  [llvm-strip]=llvm
  [bpftool]=bpftool
  [chromium]=chromium
)
missing=()
for binary in "${!NEEDED[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$binary" >/dev/null 2>&1 || missing+=("${NEEDED[$binary]}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

SERVICES_DIR=$(mktemp -d /tmp/vigil-test.XXXXXX)
cleanup() {
  scripts/services.sh stop "$SERVICES_DIR" || true
  rm -rf "$SERVICES_DIR"
}
trap cleanup EXIT INT TERM

echo "test.sh: lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "test.sh: starting ClickHouse, MariaDB and Redis under $SERVICES_DIR"
scripts/services.sh start "$SERVICES_DIR"
# shellcheck disable=SC1091
source "$SERVICES_DIR/env"

echo "test.sh: tests"
cargo test --workspace --exclude vigil-agent --locked

# The eBPF agent's tests load kernel programs: they need root (CI runs as root)
# and tracefs, and they fail (never skip) without either.
echo "test.sh: agent (eBPF) tests"
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing || echo "test.sh: cannot mount tracefs (not root?)" >&2
fi
cargo test -p vigil-agent --locked
echo "test.sh: chaos end-to-end (real estate, vigil-agent, vigil serve; about 7 minutes)"
cargo build -p vigil-agent -p vigil-test-estate --bins --locked
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
VIGIL_TEST_AGENT_BIN="$TARGET_DIR/debug/vigil-agent" VIGIL_TEST_ESTATE_BIN="$TARGET_DIR/debug/vigil-estate" \
  cargo test --test chaos_e2e --locked -- --ignored --nocapture
