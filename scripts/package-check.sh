#!/usr/bin/env bash
# Checks that livepush installs outside this repository (issue 27):
#   1. `cargo package` (with verification) of livepush-core, livepush-macros and livepush, in
#      publishing order, each verified against the ones packaged before it (cargo's temporary
#      local registry), never against the workspace paths;
#   2. no packaged source reads a file outside its own crate (`include_str!` and friends): the
#      verification build does not evaluate `#[cfg(doctest)]` includes, so it cannot see that;
#   3. a throw-away crate in a temporary folder, with exactly the README quickstart's
#      `[dependencies]` block and its `main.rs`, `[patch.crates-io]` pointing at the unpacked
#      `.crate` files, builds in a target folder of its own and runs: `GET /events?topic=comments`
#      receives the `comment_created` that one `POST /comments` publishes, then the signal the
#      quickstart handles stops it with exit status 0 and the open stream ended.
#
# Each cargo step is bounded by PACKAGE_CHECK_STEP_TIMEOUT seconds (default 1800), each wait on
# the running quickstart by 60 s. `cargo package` refuses uncommitted changes to the packaged
# files, as a release from a clean checkout must; PACKAGE_CHECK_ALLOW_DIRTY=1 passes
# --allow-dirty while you work. The quickstart runs in a private network namespace
# (`unshare -rn`) when the machine allows one, so its fixed port cannot collide with anything;
# otherwise on the host's loopback, after checking that its port is free.
set -euo pipefail

say() { echo "package-check: $*" >&2; }
# While the quickstart runs, $logs holds what it and the probes wrote; a failure shows it.
logs=""
fail() {
  echo "package-check: FAILED: $*" >&2
  for f in ${logs:+"$logs"/quickstart.log "$logs"/headers "$logs"/events "$logs"/curl.log "$logs"/post}; do
    if [ -s "$f" ]; then echo "--- $f" && cat "$f"; fi
  done >&2
  exit 1
}

# Polls `$@` every 0.2 s for at most 60 s; fails with $what when it never succeeds.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 1 300); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  fail "$what (waited 60 s)"
}

# What is still running when the script ends, early or not, and the folder it removes then.
qs_pid="" curl_pid="" work=""
cleanup() {
  for p in $curl_pid $qs_pid; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# --- the running quickstart (called by the script itself, possibly inside a namespace) ---------
# probe BIN ADDR SIGNAL WORKDIR
probe() {
  local bin=$1 addr=$2 sig=$3 dir=$4
  logs=$dir
  # set -m: a job of a non-interactive shell would otherwise start with SIGINT ignored, and the
  # quickstart is stopped with the signal it handles, which may be SIGINT (Ctrl-C)
  set -m
  "$bin" >"$dir/quickstart.log" 2>&1 &
  qs_pid=$!
  set +m
  alive() { kill -0 "$qs_pid" 2>/dev/null || fail "the quickstart exited"; }
  healthy() { alive && curl -fsS -o /dev/null "http://$addr/health" 2>/dev/null; }
  wait_for "the quickstart never answered GET http://$addr/health" healthy
  say "the quickstart answers on $addr"

  curl -sSN -D "$dir/headers" -o "$dir/events" "http://$addr/events?topic=comments" 2>"$dir/curl.log" &
  curl_pid=$!
  subscribed() { grep -q '^HTTP/[0-9.]* 200' "$dir/headers" 2>/dev/null; }
  wait_for "GET /events?topic=comments never answered 200" subscribed

  local body='{"author":"package-check","text":"hello from the packaged crates"}'
  local status
  status=$(curl -sS -o "$dir/post" -w '%{http_code}' -H 'content-type: application/json' \
    -d "$body" "http://$addr/comments") || status="none (curl status $?)"
  [ "$status" = 201 ] || fail "POST /comments answered $status"
  received() { grep -qx 'event: comment_created' "$dir/events" && grep -qxF "data: $body" "$dir/events"; }
  wait_for "the stream never carried comment_created with the posted comment" received
  say "GET /events?topic=comments received:"
  sed 's/^/    /' "$dir/events" >&2

  kill "-$sig" "$qs_pid"
  stopped() { ! kill -0 "$qs_pid" 2>/dev/null; }
  wait_for "the quickstart did not stop on SIG$sig" stopped
  local code=0
  wait "$qs_pid" || code=$?
  qs_pid=""
  [ "$code" = 0 ] || fail "the quickstart exited with status $code on SIG$sig"
  ended() { ! kill -0 "$curl_pid" 2>/dev/null; }
  wait_for "the open stream was not ended when the quickstart stopped" ended
  curl_pid="" logs=""
  say "SIG$sig stopped the quickstart with status 0 and ended the open stream"
}

if [ "${1:-}" = --probe-in-namespace ]; then
  shift
  ip link set lo up || fail "cannot bring up loopback in the network namespace"
  probe "$@"
  exit 0
fi

# --- the check ---------------------------------------------------------------------------------
self=$(realpath "$0")
cd "$(dirname "$self")/.."
start=$SECONDS
limit=${PACKAGE_CHECK_STEP_TIMEOUT:-1800}
work=$(mktemp -d "${TMPDIR:-/tmp}/livepush-package-check.XXXXXX")

# The README quickstart's fenced block of language $1 (the first one under "## Quickstart").
quickstart_block() {
  awk -v lang="$1" '
    /^## / && !fenced { section = ($0 == "## Quickstart"); next }
    !section || done { next }
    !fenced && $0 ~ ("^```" lang "([, ].*)?$") { fenced = 1; next }
    fenced && /^```$/ { fenced = 0; done = 1; next }
    fenced { print }
  ' README.md
}
main_rs=$(quickstart_block rust)
[ -n "$main_rs" ] || fail "README.md has no \`\`\`rust block under '## Quickstart'"
expected_deps=$(cat scripts/quickstart/Cargo.toml.in)
deps=$(quickstart_block toml)
if [ -z "$deps" ]; then
  say "README.md shows no \`\`\`toml block in its quickstart: using scripts/quickstart/Cargo.toml.in"
  deps=$expected_deps
elif [ "$deps" != "$expected_deps" ]; then
  diff <(echo "$expected_deps") <(echo "$deps") >&2 || true
  fail "the quickstart's [dependencies] in README.md differ from scripts/quickstart/Cargo.toml.in (< file, > README); make them the same"
fi

say "cargo package -p livepush-core -p livepush-macros -p livepush (with verification)"
dirty=()
[ "${PACKAGE_CHECK_ALLOW_DIRTY:-}" = 1 ] && dirty=(--allow-dirty)
timeout "$limit" cargo package -p livepush-core -p livepush-macros -p livepush "${dirty[@]}" ||
  fail "cargo package (status $?)"

# Where cargo wrote the .crate files, and the versions it packaged.
mapfile -t crates < <(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
for name in ("livepush-core", "livepush-macros", "livepush"):
    (version,) = [p["version"] for p in meta["packages"] if p["name"] == name]
    print("%s/package/%s-%s.crate" % (meta["target_directory"], name, version))
')
[ "${#crates[@]}" = 3 ] || fail "expected 3 packages, cargo metadata gave ${#crates[@]}"
mkdir "$work/crates"
for crate in "${crates[@]}"; do
  tar -xzf "$crate" -C "$work/crates" || fail "cannot unpack $crate"
done

say "no packaged source includes a file outside its crate"
python3 - "$work/crates" <<'PY' || fail "a packaged crate includes files it does not contain (above)"
import os, re, sys
root = sys.argv[1]
bad = []
for crate in sorted(os.listdir(root)):
    top = os.path.realpath(os.path.join(root, crate))
    for folder, _, files in os.walk(top):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            text = open(path, encoding="utf-8").read()
            for m in re.finditer(r'\binclude(?:_str|_bytes)?!\s*\(\s*(.*?)\)', text, re.S):
                where = f"{os.path.relpath(path, root)}: {m.group(0)}"
                lit = re.fullmatch(r'"([^"\\]*)"', m.group(1).strip())
                if not lit:
                    bad.append(f"{where}: not a plain path literal, so this check cannot follow it")
                    continue
                target = os.path.realpath(os.path.join(folder, lit.group(1)))
                if not target.startswith(top + os.sep) or not os.path.isfile(target):
                    bad.append(f"{where}: {lit.group(1)} is not a file of the package")
for b in bad:
    print(f"  {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY

say "a throw-away crate with the README's quickstart, on the packaged crates"
app=$work/quickstart
mkdir -p "$app/src"
printf '%s\n' "$main_rs" >"$app/src/main.rs"
{
  # edition 2024: what `cargo new` gives a new user; [workspace]: no folder above adopts it
  printf '[package]\nname = "quickstart"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n'
  printf '[workspace]\n\n%s\n\n[patch.crates-io]\n' "$deps"
  for crate in "${crates[@]}"; do
    dir=$(basename "$crate" .crate)
    printf '%s = { path = "%s" }\n' "${dir%-*}" "$work/crates/$dir"
  done
} >"$app/Cargo.toml"
sed 's/^/    /' "$app/Cargo.toml" >&2
# its own target folder, shared with nothing, removed with $work
env -u CARGO_BUILD_TARGET_DIR CARGO_TARGET_DIR="$work/target" \
  timeout "$limit" cargo build --manifest-path "$app/Cargo.toml" ||
  fail "the quickstart does not build on the packaged crates (status $?)"
# A [patch] that does not apply only warns: prove that the lock file took the unpacked packages.
for crate in livepush-core livepush-macros livepush; do
  # exactly one [[package]] of that name, and without a `source` (a path package has none)
  awk -v name="name = \"$crate\"" '
    /^\[\[package\]\]/ { this = 0 }
    $0 == name { this = 1; found++ }
    this && /^source = / { registry = 1 }
    END { exit !(found == 1 && !registry) }
  ' "$app/Cargo.lock" || fail "the quickstart's Cargo.lock did not take $crate from the unpacked package"
done

addr=$(grep -oE '"(127\.0\.0\.1|0\.0\.0\.0|localhost):[0-9]+"' "$app/src/main.rs" | head -n 1 | tr -d '"') ||
  true
[ -n "$addr" ] || fail "cannot tell from the quickstart which address it listens on"
addr=${addr/0.0.0.0/127.0.0.1}
# the signal it is written to stop on: SIGTERM (docker, Kubernetes) when it handles it, else Ctrl-C
sig=INT
grep -q 'SignalKind::terminate' "$app/src/main.rs" && sig=TERM
bin=$work/target/debug/quickstart
if unshare -rn true 2>/dev/null && command -v ip >/dev/null; then
  say "running it in a private network namespace on $addr"
  unshare -rn bash "$self" --probe-in-namespace "$bin" "$addr" "$sig" "$work"
else
  say "no network namespace here: running it on the host's $addr"
  if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
    fail "$addr is taken by another program, and the quickstart listens there"
  fi
  probe "$bin" "$addr" "$sig" "$work"
fi

say "passed in $((SECONDS - start)) s"
