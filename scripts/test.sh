#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian 12 / Ubuntu 24.04 with only Rust installed:
#
# 1. installs what the tests need and is missing, with apt-get (as root, or through sudo):
#    redis-server (Redis tests), chromium + chromium-driver (browser test), nats-server,
#    postgresql (only for its initdb/pg_ctl, when no LIVEPUSH_TEST_POSTGRES_URL is given),
#    nodejs + npm (TypeScript client);
# 2. below Node.js 20 (Debian 12 and Ubuntu 24.04 ship 18), fetches a Node.js 20 binary from the
#    npm registry (package node-linux-<arch>) into $target/test-node and puts it first on PATH;
# 3. unless LIVEPUSH_TEST_POSTGRES_URL names a server, starts a PostgreSQL of its own (initdb +
#    pg_ctl into a temporary directory, 127.0.0.1 on a free port, trust auth, as the postgres user
#    when run as root), creates the database `test`, exports LIVEPUSH_TEST_POSTGRES_URL, and stops
#    and removes it at exit;
# 4. `cargo test --workspace --all-features "$@"`, then the client's tests (`npm ci && npm test`
#    in clients/typescript) against the example binaries that cargo just built.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

say() { echo "scripts/test.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}
now_ms() { date +%s%3N; }
# Runs a command as root: directly, or through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run '$*' (no sudo here): install the packages named above and run again"
  fi
}

# The newest PostgreSQL server binaries the distribution installed (initdb is not on PATH there).
pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

if [ -n "${LIVEPUSH_SKIP_POSTGRES:-}" ]; then
  say "LIVEPUSH_SKIP_POSTGRES is no longer read: the PostgreSQL tests always run (this script starts a server)"
fi

# --- 1. packages -------------------------------------------------------------------------
need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
command -v nats-server >/dev/null 2>&1 || need_pkgs+=(nats-server)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
if [ -z "${LIVEPUSH_TEST_POSTGRES_URL:-}" ] && [ -z "$(pg_bin)" ]; then
  need_pkgs+=(postgresql)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]} (needed by the tests)"
  command -v apt-get >/dev/null 2>&1 ||
    die "cannot install ${need_pkgs[*]}: no apt-get here. Install them (macOS: brew install redis chromium chromedriver nats-server node postgresql) and run again."
  started=$(now_ms)
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  say "installed in $(($(now_ms) - started)) ms"
fi

# --- 2. Node.js >= 20 ------------------------------------------------------------------------
# The client declares Node.js >= 20 (package.json `engines`), so its tests run on 20 or later
# (Debian 12's and Ubuntu 24.04's 18 is past its end of life). nodejs.org may be out of reach; the
# npm registry, which `npm ci` needs anyway, carries the official binaries as node-linux-<arch>.
node_major=$(node --version | sed -E 's/^v([0-9]+).*/\1/')
if [ "$node_major" -lt 20 ]; then
  case "$(uname -m)" in
    x86_64) node_arch=x64 ;;
    aarch64 | arm64) node_arch=arm64 ;;
    *) die "Node.js $(node --version) is too old (the client needs 20) and there is no npm package for $(uname -m): install Node.js 20 and run again" ;;
  esac
  # absolute: PATH must still find it after the `cd clients/typescript` below
  node_dir="${CARGO_TARGET_DIR:-target}/test-node"
  mkdir -p "$node_dir"
  node_dir=$(cd "$node_dir" && pwd)
  node_bin="$node_dir/node_modules/node-linux-$node_arch/bin"
  if ! { [ -x "$node_bin/node" ] && "$node_bin/node" --version | grep -q '^v20\.'; }; then
    say "Node.js $(node --version) is too old for the client's tests: fetching Node.js 20 from the npm registry into $node_dir"
    started=$(now_ms)
    npm install --prefix "$node_dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
      "node-linux-$node_arch@20"
    say "Node.js 20 fetched in $(($(now_ms) - started)) ms"
  fi
  export PATH="$node_bin:$PATH"
  say "using Node.js $(node --version) from $node_bin"
fi

# --- 3. PostgreSQL -----------------------------------------------------------------------------
pg_dir=""
stop_postgres() {
  [ -n "$pg_dir" ] || return 0
  $pg_as "$pg_bin_dir/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
  pg_dir=""
}
if [ -n "${LIVEPUSH_TEST_POSTGRES_URL:-}" ]; then
  say "PostgreSQL tests use LIVEPUSH_TEST_POSTGRES_URL (its database must exist; each test creates one next to it)"
else
  started=$(now_ms)
  pg_bin_dir=$(pg_bin)
  [ -n "$pg_bin_dir" ] || die "no initdb found (looked in /usr/lib/postgresql/*/bin and PATH)"
  pg_as=""
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/livepush-test-pg.XXXXXX")
  trap stop_postgres EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root.
    id postgres >/dev/null 2>&1 || die "running as root, but there is no postgres user to run PostgreSQL as"
    chown postgres "$pg_dir"
    pg_as="runuser -u postgres --"
  fi
  $pg_as "$pg_bin_dir/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >"$pg_dir/initdb.log" 2>&1 ||
    die "initdb failed: $(cat "$pg_dir/initdb.log")"
  # A free port: bash cannot bind one to hand over, so try a few random ones and let a port
  # taken meanwhile fail pg_ctl, then take the next. fsync off: a test server, thrown away at exit.
  pg_port=""
  for _ in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    if $pg_as "$pg_bin_dir/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $pg_dir -c fsync=off" >/dev/null; then
      pg_port=$port
      break
    fi
  done
  [ -n "$pg_port" ] || die "PostgreSQL did not start: $(tail -n 20 "$pg_dir/server.log" 2>/dev/null)"
  "$pg_bin_dir/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres test
  export LIVEPUSH_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/test"
  say "PostgreSQL $("$pg_bin_dir/pg_ctl" --version | awk '{print $3}') started in $(($(now_ms) - started)) ms: $LIVEPUSH_TEST_POSTGRES_URL (stopped at exit)"
fi

# --- 4. the tests ------------------------------------------------------------------------------
cargo test --workspace --all-features "$@"

# The client's tests start the example binaries built above (target/debug, or
# $CARGO_TARGET_DIR/debug).
cd clients/typescript
say "client tests on Node.js $(node --version) ($(command -v node)), npm $(npm --version)"
started=$(now_ms)
npm ci --no-audit --no-fund --loglevel=error
say "npm ci took $(($(now_ms) - started)) ms"
npm test
../../scripts/npm-package-check.sh # the client as a user installs it: npm pack, a fresh project, npx, tsc --strict
