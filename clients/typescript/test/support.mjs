// Test helpers: example binaries and redis-server on free loopback ports, killed at the end.
import { spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
/** Where cargo put the example binaries: $LIVEPUSH_BIN_DIR, else $CARGO_TARGET_DIR/debug, else target/debug. */
export const binDir =
  process.env.LIVEPUSH_BIN_DIR ?? resolve(process.env.CARGO_TARGET_DIR ?? resolve(root, "target"), "debug");

export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/** Starts example `name` (built by cargo) with `env` and waits until it logs its URL. */
export async function startExample(name, env = {}, port) {
  const program = resolve(binDir, name);
  if (!existsSync(program)) throw new Error(`${program} is missing: run \`cargo build --bins\` first`);
  port ??= await freePort();
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("LIVEPUSH_") && !["REDIS_URL", "HOST", "PORT"].includes(k)),
  );
  const child = spawn(program, [], {
    env: { ...clean, RUST_LOG: "info", HOST: "127.0.0.1", PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const wanted = `listening on http://127.0.0.1:${port}`;
  await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not start:\n${output}`)), 30_000);
    const seen = (chunk) => {
      output += chunk;
      if (output.includes(wanted)) {
        clearTimeout(timer);
        ok();
      }
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited with ${code}:\n${output}`));
    });
  });
  child.removeAllListeners("exit");
  const url = (path = "") => `http://127.0.0.1:${port}${path}`;
  return {
    port,
    url,
    output: () => output,
    /** SIGTERM, then waits for the exit (graceful shutdown ends the streams). */
    stop: () =>
      new Promise((ok) => {
        if (child.exitCode !== null || child.signalCode !== null) return ok();
        child.once("exit", () => ok());
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 5000).unref();
      }),
  };
}

/** A redis-server with no persistence on a free port. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  child.on("error", () => {});
  const deadline = Date.now() + 10_000;
  while (!(await ping(port))) {
    if (Date.now() > deadline) throw new Error("redis-server did not start (is it installed? scripts/test.sh installs it)");
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill("SIGKILL") };
}

function ping(port) {
  return new Promise((ok) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => {
      socket.destroy();
      ok(d.toString().startsWith("+PONG"));
    });
    socket.on("error", () => ok(false));
  });
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Waits until `check()` is true, or throws `what`. */
export async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

/** Waits until the example's broker is ready (`/health/ready` answers 200): with Redis, a
 * publish before that waits in the retry buffer and may land after later ones. */
export async function ready(server) {
  await until(`${server.url()} ready`, async () => {
    const response = await fetch(server.url("/health/ready")).catch(() => null);
    return response?.status === 200;
  });
}

export async function post(base, text, author = "test") {
  const response = await fetch(base("/comments"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ author, text }),
  });
  if (response.status !== 201) throw new Error(`POST /comments answered ${response.status}`);
  return response.json();
}
