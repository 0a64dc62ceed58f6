// Every example's AsyncAPI document validates with the official parser, and the committed
// generated types and page bundles are what the current documents and pages build to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Parser } from "@asyncapi/parser";
import { generate } from "../bin/livepush-typescript.mjs";
import { startExample } from "./support.mjs";

const examples = resolve(dirname(fileURLToPath(import.meta.url)), "../../../examples");
const EXAMPLES = {
  crm_comments: {},
  bench_server: {},
  domain_events: {},
  multi_instance: {},
  tickets: {},
  chat: {},
};
// tickets serves its admin routes (the AsyncAPI document among them) only with an operator's
// bearer token: none is 401, a user's is 403.
const HEADERS = { tickets: { authorization: "Bearer ops-token" } };
const USER_HEADERS = { tickets: { authorization: "Bearer alice-token" } };
// The pages that use the client, with their committed generated types.
const PAGES = ["crm_comments", "domain_events"];

for (const [name, env] of Object.entries(EXAMPLES)) {
  test(`${name}: /events/asyncapi.json is valid AsyncAPI 3.0`, async (t) => {
    const server = await startExample(name, env);
    t.after(() => server.stop());
    if (HEADERS[name]) {
      const anonymous = await fetch(server.url("/events/asyncapi.json"));
      assert.equal(anonymous.status, 401, `${name}: the document needs the token`);
      const user = await fetch(server.url("/events/asyncapi.json"), { headers: USER_HEADERS[name] });
      assert.equal(user.status, 403, `${name}: a user's token is not an operator's`);
    }
    const response = await fetch(server.url("/events/asyncapi.json"), { headers: HEADERS[name] ?? {} });
    assert.equal(response.status, 200);
    const text = await response.text();
    const { document, diagnostics } = await new Parser().parse(text);
    const errors = diagnostics.filter((d) => d.severity === 0);
    assert.deepEqual(errors, [], `${name}: parser errors`);
    assert.ok(document, "parsed");
    assert.equal(document.version(), "3.0.0");
    const messages = document.components().messages().all().map((m) => m.name());
    assert.ok(messages.includes("livepush.reset") && messages.includes("livepush.lagged"));
    if (PAGES.includes(name)) {
      const committed = await readFile(resolve(examples, name, "events.gen.ts"), "utf8");
      assert.equal(
        generate(JSON.parse(text), "/events/asyncapi.json"),
        committed,
        `examples/${name}/events.gen.ts is stale: npm run gen-types -- ${server.url("/events/asyncapi.json")} --out ../../examples/${name}/events.gen.ts`,
      );
    }
  });
}
