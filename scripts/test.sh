#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests need and is
# missing (redis-server for the Redis tests, Chromium + ChromeDriver for the browser test,
# Node.js + npm for the TypeScript client), checks that PostgreSQL answers on 127.0.0.1:5432 for
# the outbox tests (or that LIVEPUSH_SKIP_POSTGRES=1 says to skip them), then
# `cargo test --workspace --all-features`, then the client's tests (`npm ci && npm test` in
# clients/typescript) against the example binaries that cargo just built.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${need_pkgs[*]} (needed by the tests)" >&2
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "scripts/test.sh: cannot install ${need_pkgs[*]}: no apt-get here. Install them (macOS: brew install redis chromium chromedriver node) and run again." >&2
    exit 1
  fi
fi

# The outbox tests create a database per test on this server (trust auth, user postgres).
pg_url="${LIVEPUSH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
if [ "${LIVEPUSH_SKIP_POSTGRES:-}" = "1" ]; then
  echo "scripts/test.sh: LIVEPUSH_SKIP_POSTGRES=1: the PostgreSQL tests are SKIPPED (the SQLite ones run)" >&2
elif ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && [ -z "${LIVEPUSH_TEST_POSTGRES_URL:-}" ]; then
  cat >&2 <<MSG
scripts/test.sh: no PostgreSQL answers on 127.0.0.1:5432, and the outbox tests need one.
  Install and start one (Debian/Ubuntu: sudo apt-get install postgresql, then set trust auth
  for 127.0.0.1 in pg_hba.conf), or point LIVEPUSH_TEST_POSTGRES_URL at a server
  (now: $pg_url), or run LIVEPUSH_SKIP_POSTGRES=1 scripts/test.sh to skip the PostgreSQL tests.
MSG
  exit 1
fi

cargo test --workspace --all-features "$@"

# The client's tests start the example binaries built above (target/debug, or
# $CARGO_TARGET_DIR/debug).
cd clients/typescript
npm ci --no-audit --no-fund --loglevel=error
npm test
