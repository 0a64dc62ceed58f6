// Unit tests of the client's own text/event-stream parser (src/sse.ts) against the WHATWG
// parsing rules: https://html.spec.whatwg.org/multipage/server-sent-events.html
import { test } from "node:test";
import assert from "node:assert/strict";
import { SseParser } from "../dist/sse.js";

const bytes = (text) => new TextEncoder().encode(text);

/** Everything the parser reports for `chunks` (byte arrays), in order. */
function parse(chunks) {
  const out = [];
  const parser = new SseParser({
    frame: (f) => out.push({ event: f.event, data: f.data, id: f.id }),
    retry: (ms) => out.push({ retry: ms }),
  });
  for (const chunk of chunks) parser.push(chunk);
  return out;
}

const frame = (event, data, id) => ({ event, data, id });

// Every rule at least once, with all three line endings mixed and multi-byte characters.
const SAMPLE =
  "\uFEFF: a comment before anything\r\n" +
  "retry: 1500\r\n" +
  "retry: 12x\r\n" + // not only digits: ignored
  "retry:\n" + // empty: ignored
  "id: 1\r\n" +
  "event: a\r\n" +
  'data: {"x":1}\r\n' +
  "\r\n" +
  "data\n" + // a field without a colon: the whole line is the name, the value empty
  "data:second\n" + // no space after the colon
  "data:  two spaces\n" + // only the first space goes
  "unknown: field\n" + // ignored
  "\n" +
  "id: 2\0x\r" + // an id with a NUL is ignored
  "event\r" + // an event field without a colon: empty, so "message"
  "data: cr only\r" +
  "\r" +
  ":comment only\n" +
  "\n" + // a blank line ending nothing: no frame
  "event: x\n" +
  "\n" + // an event name but no data and no id: nothing
  "data: é€😀 multi-byte\n" +
  "data:\n" + // an empty data line adds an empty line
  "id\n" + // an id field without a colon: the empty id
  "\n" +
  "id: 3\n" + // an id alone: reported (the client remembers it), nothing dispatched
  "\r\n" +
  "data: \uFEFFa BOM inside the stream stays\n" +
  "\n" +
  "data: the stream ends before this frame's blank line\n";

const EXPECTED = [
  { retry: 1500 },
  frame("a", '{"x":1}', "1"),
  frame("message", "\nsecond\n two spaces", undefined),
  frame("message", "cr only", undefined),
  frame("message", "é€😀 multi-byte\n", ""),
  frame("message", undefined, "3"),
  frame("message", "\uFEFFa BOM inside the stream stays", undefined),
];

test("the sample stream in one chunk gives what the rules say", () => {
  assert.deepEqual(parse([bytes(SAMPLE)]), EXPECTED);
});

test("every split point of the sample (bytes, inside CRLF, UTF-8 and the BOM) gives the same", () => {
  const all = bytes(SAMPLE);
  for (let at = 0; at <= all.length; at++) {
    assert.deepEqual(parse([all.subarray(0, at), all.subarray(at)]), EXPECTED, `split at byte ${at}`);
  }
});

test("every pair of split points gives the same, and so does one byte at a time", () => {
  const all = bytes(SAMPLE);
  // every pair over the first 120 bytes (the BOM, comments, retry fields, CRLF and the first
  // frames), then pairs one byte apart all the way
  for (let a = 0; a <= 120; a++) {
    for (let b = a; b <= 120; b++) {
      const chunks = [all.subarray(0, a), all.subarray(a, b), all.subarray(b)];
      assert.deepEqual(parse(chunks), EXPECTED, `split at bytes ${a} and ${b}`);
    }
  }
  for (let a = 0; a < all.length; a++) {
    const chunks = [all.subarray(0, a), all.subarray(a, a + 1), all.subarray(a + 1)];
    assert.deepEqual(parse(chunks), EXPECTED, `byte ${a} alone`);
  }
  const single = Array.from(all, (_, i) => all.subarray(i, i + 1));
  assert.deepEqual(parse(single), EXPECTED, "one byte per chunk");
});

test("random splits into many chunks give the same (seeded, 2000 runs)", () => {
  const all = bytes(SAMPLE);
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  for (let run = 0; run < 2000; run++) {
    const chunks = [];
    for (let at = 0; at < all.length; ) {
      const len = Math.floor(next() * 12); // empty chunks too
      chunks.push(all.subarray(at, at + len));
      at += len;
    }
    assert.deepEqual(parse(chunks), EXPECTED, `run ${run}`);
  }
});

test("CRLF, CR and LF each end a line, and CR LF is one line ending, not two", () => {
  for (const eol of ["\r\n", "\r", "\n"]) {
    const text = `data: a${eol}data: b${eol}${eol}data: c${eol}${eol}`;
    assert.deepEqual(parse([bytes(text)]), [frame("message", "a\nb"), frame("message", "c")], JSON.stringify(eol));
  }
  // LF CR is two line endings: a blank line, which dispatches
  assert.deepEqual(parse([bytes("data: a\n\rdata: b\n\n")]), [frame("message", "a"), frame("message", "b")]);
});

test("a frame ended by CR is reported at once, without waiting for the next chunk", () => {
  const out = [];
  const parser = new SseParser({ frame: (f) => out.push(f.data), retry: () => {} });
  parser.push(bytes("data: now\r\r"));
  assert.deepEqual(out, ["now"], "dispatched before any further byte");
  parser.push(bytes("\ndata: next\r\n\r\n")); // the LF belongs to the CR before it: no extra blank line
  assert.deepEqual(out, ["now", "next"]);
});

test("dispatch happens on a blank line only", () => {
  assert.deepEqual(parse([bytes("data: a\ndata: b\n")]), [], "no blank line, no frame");
  assert.deepEqual(parse([bytes("data: a")]), [], "no line end at all");
  assert.deepEqual(parse([bytes("data: a\n\n\n\n")]), [frame("message", "a")], "more blank lines, one frame");
});

test("only the leading byte order mark is dropped", () => {
  assert.deepEqual(parse([bytes("\uFEFFdata: x\n\n")]), [frame("message", "x")]);
  // A second BOM is part of the first line: the field is "\uFEFFdata", unknown, ignored.
  assert.deepEqual(parse([bytes("\uFEFF\uFEFFdata: x\n\n")]), []);
});

test("an empty data line counts: `data:` alone dispatches an empty message", () => {
  assert.deepEqual(parse([bytes("data:\n\n")]), [frame("message", "")]);
  assert.deepEqual(parse([bytes("data\n\n")]), [frame("message", "")]);
  assert.deepEqual(parse([bytes("data:\ndata:\n\n")]), [frame("message", "\n")]);
});

test("the event name and the frame's own id reset after each frame; an id with NUL is ignored", () => {
  const text = "event: e\nid: 7\ndata: 1\n\ndata: 2\n\nid: a\0b\ndata: 3\n\n";
  assert.deepEqual(parse([bytes(text)]), [frame("e", "1", "7"), frame("message", "2"), frame("message", "3")]);
});
