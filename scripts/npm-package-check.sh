#!/usr/bin/env bash
# Checks the TypeScript client as a user outside this repository gets it, an npm package:
#
# 1. `npm pack` in clients/typescript (its `prepare` builds dist/): the tarball holds the built JS,
#    the .d.ts files, the CLI and the README, and no sources or tests;
# 2. a fresh project in a temporary directory (`npm init -y`) installs the tarball and TypeScript
#    from the registry (the version the client is built with);
# 3. against a running crm_comments (target/debug, PORT=0, its own SQLite file),
#    `npx --no-install livepush-typescript <url> --out events.gen.ts` runs the installed CLI, and
#    what it writes must equal the committed examples/crm_comments/events.gen.ts;
# 4. `tsc --strict --noEmit` type-checks a page that imports the package and the generated types,
#    with `moduleResolution` bundler and nodenext, the package's own .d.ts included (no
#    skipLibCheck); a second file with two deliberate type errors must fail, with those errors;
# 5. Node.js imports the installed package, subscribes to the server and receives the event a
#    POST /comments publishes.
#
# Needs Node.js >= 20 and npm on PATH, the registry (or npm's cache) for TypeScript, and
# `cargo build --bins` done (crm_comments in ${CARGO_TARGET_DIR:-target}/debug). Each step is
# bounded by `timeout`; the temporary directory and the server go at exit, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
client="$root/clients/typescript"

say() { echo "scripts/npm-package-check.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}
now_ms() { date +%s%3N; }

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
server_bin="$target/debug/crm_comments"
[ -x "$server_bin" ] || die "$server_bin is missing: run \`cargo build --all-features --bins\` first"

work=$(mktemp -d "${TMPDIR:-/tmp}/livepush-npm-check.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
started_all=$(now_ms)

# --- 1. the tarball ----------------------------------------------------------------------------
cd "$client"
if [ ! -d node_modules ]; then
  say "clients/typescript has no node_modules: npm ci (the build needs tsc)"
  timeout 300 npm ci --no-audit --no-fund --loglevel=error
fi
started=$(now_ms)
timeout 300 npm pack --pack-destination "$work" --loglevel=error >"$work/pack.log" 2>&1 ||
  die "npm pack failed: $(cat "$work/pack.log")"
tarballs=("$work"/*.tgz)
[ ${#tarballs[@]} -eq 1 ] && [ -f "${tarballs[0]}" ] || die "npm pack made no single tarball: $(cat "$work/pack.log")"
tarball=${tarballs[0]}
contents=$(tar -tzf "$tarball")
for wanted in package/package.json package/README.md package/bin/livepush-typescript.mjs \
  package/dist/index.js package/dist/index.d.ts package/dist/sse.js package/dist/sse.d.ts; do
  grep -qx "$wanted" <<<"$contents" || die "$(basename "$tarball") lacks $wanted; it holds: $contents"
done
if grep -E '^package/(src|test|scripts|node_modules)/' <<<"$contents"; then
  die "$(basename "$tarball") ships the files above, which users do not need"
fi
say "packed $(basename "$tarball") ($(wc -c <"$tarball") bytes, $(wc -l <<<"$contents") files) in $(($(now_ms) - started)) ms"
ts_version=$(node -p 'require("./package.json").devDependencies.typescript')

# --- 2. a fresh project --------------------------------------------------------------------------
app="$work/app"
mkdir "$app"
cd "$app"
timeout 60 npm init -y >/dev/null
# ES modules, as a page's code is; tsc's nodenext check below reads it.
timeout 60 npm pkg set type=module
started=$(now_ms)
timeout 300 npm install --no-audit --no-fund --loglevel=error --prefer-offline "$tarball" "typescript@$ts_version" ||
  die "npm install of $(basename "$tarball") and typescript@$ts_version failed"
[ -f node_modules/@livepush/client/dist/index.js ] && [ ! -L node_modules/@livepush/client ] ||
  die "node_modules/@livepush/client is not an installed copy of the tarball"
say "installed the tarball and typescript@$ts_version into a fresh project in $(($(now_ms) - started)) ms"

# --- 3. the CLI from the installed package, against a running example -------------------------
# A bare environment: no LIVEPUSH_*, REDIS_URL or DATABASE_URL of the caller's reaches the server.
env -i PATH="$PATH" HOME="${HOME:-$work}" RUST_LOG=info NO_COLOR=1 HOST=127.0.0.1 PORT=0 \
  DATABASE_URL="sqlite://$work/crm_comments.db?mode=rwc" "$server_bin" >"$work/server.log" 2>&1 &
server_pid=$!
url=""
for _ in $(seq 1 600); do # 60 s at most
  url=$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$work/server.log" | head -n 1 | sed 's/^listening on //' || true)
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || die "crm_comments exited: $(cat "$work/server.log")"
  sleep 0.1
done
[ -n "$url" ] || die "crm_comments did not say where it listens within 60 s: $(cat "$work/server.log")"
say "crm_comments listening on $url"

# --no-install: the CLI of the installed package, never one fetched from the registry.
timeout 120 npx --no-install livepush-typescript "$url/events/asyncapi.json" --out events.gen.ts ||
  die "npx livepush-typescript failed"
[ -s events.gen.ts ] || die "npx livepush-typescript wrote no events.gen.ts"
cmp -s events.gen.ts "$root/examples/crm_comments/events.gen.ts" ||
  die "the installed CLI's events.gen.ts differs from examples/crm_comments/events.gen.ts: $(diff "$root/examples/crm_comments/events.gen.ts" events.gen.ts || true)"
say "npx livepush-typescript wrote events.gen.ts ($(wc -l <events.gen.ts) lines, as committed in examples/crm_comments)"

# --- 4. tsc --strict against the package and the generated types -------------------------------
cat >page.ts <<'EOF'
// A page as a user writes it: the installed package and the types its CLI generated.
import { subscribe, type EventMeta, type Status, type Subscription } from "@livepush/client";
import type { Comment, Events, Topic } from "./events.gen.js";

const comments = new Map<number, Comment>();
const topics: Topic[] = ["comments"];
const subscription: Subscription<Events> = subscribe<Events>("/events", {
  topics,
  lastEventId: null,
  onReset: (reset) => console.log(`reload: ${reset.reason}`),
  onStatus: (status: Status) => console.log(status),
});
subscription.on("comment_created", (comment, meta: EventMeta) => {
  comments.set(comment.id, comment);
  console.log(meta.id, comment.author.toUpperCase(), comment.updated_at ?? "never updated");
});
const off = subscription.on("comment_deleted", (comment) => comments.delete(comment.id));
off();
export const count = (): number => comments.size;
EOF
cat >wrong.ts <<'EOF'
// Two mistakes the generated types must catch.
import { subscribe } from "@livepush/client";
import type { Events } from "./events.gen.js";

const subscription = subscribe<Events>("/events", { topics: ["comments"] });
subscription.on("comment_created", (comment) => comment.body); // Comment has no `body`
subscription.on("comment_archived", () => {}); // crm_comments publishes no such event
EOF
tsc=(timeout 120 npx --no-install tsc --strict --noEmit --lib es2022,dom)
started=$(now_ms)
"${tsc[@]}" --target es2022 --module esnext --moduleResolution bundler page.ts ||
  die "tsc --strict (moduleResolution bundler) rejects page.ts"
"${tsc[@]}" --target es2022 --module nodenext --moduleResolution nodenext page.ts ||
  die "tsc --strict (moduleResolution nodenext) rejects page.ts"
rc=0
"${tsc[@]}" --target es2022 --module esnext --moduleResolution bundler wrong.ts >"$work/wrong.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || die "tsc --strict accepts wrong.ts: the types check nothing"
[ "$rc" -ne 124 ] || die "tsc timed out on wrong.ts"
grep -q "wrong.ts(6,.*error TS2339: Property 'body' does not exist on type" "$work/wrong.log" &&
  grep -q "wrong.ts(7,.*error TS2345: Argument of type '\"comment_archived\"'" "$work/wrong.log" ||
  die "tsc failed on wrong.ts, but not (only) with its two deliberate errors: $(cat "$work/wrong.log")"
say "tsc --strict: page.ts passes (bundler, nodenext), wrong.ts fails with its two errors, in $(($(now_ms) - started)) ms"

# --- 5. the installed JS at run time ------------------------------------------------------------
cat >receive.mjs <<'EOF'
// The installed package in Node.js: subscribe, publish through the API, receive the event.
import { subscribe } from "@livepush/client";

const base = process.argv[2];
const text = `from the installed package ${process.pid}`;
const subscription = subscribe(`${base}/events`, {
  topics: ["comments"],
  storage: null,
  onError: (error) => {
    console.error(error);
    process.exit(1);
  },
});
const received = new Promise((resolve) =>
  subscription.on("comment_created", (comment) => comment.text === text && resolve(comment)),
);
await subscription.opened;
const response = await fetch(`${base}/comments`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ author: "npm-package-check", text }),
});
if (response.status !== 201) throw new Error(`POST /comments answered ${response.status}`);
const comment = await received;
subscription.close();
console.log(`received comment_created ${comment.id} through the installed @livepush/client`);
EOF
timeout 60 node receive.mjs "$url" || die "the installed package did not receive comment_created from $url"

say "the npm package works outside the repository (all steps in $(($(now_ms) - started_all)) ms)"
