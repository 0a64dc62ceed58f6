/**
 * The `text/event-stream` parser of the client, after the WHATWG rules
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 * Kept apart from the subscription so that its unit tests can feed it bytes split anywhere.
 */

/** A frame the stream ended with a blank line. */
export interface SseFrame {
  /** The `event:` field, or `"message"` when it had none (or an empty one). */
  event: string;
  /** The `data:` lines joined with `"\n"`; `undefined` when it had none: nothing to dispatch. */
  data: string | undefined;
  /** The frame's own `id:` field (one with a NUL is ignored); `undefined` when it had none. */
  id: string | undefined;
}

/** What a parser reports. */
export interface SseSink {
  /** A blank line ended a frame that had a data or an id field (others report nothing). */
  frame(frame: SseFrame): void;
  /** A `retry:` field of ASCII digits only: the reconnection delay the server asks for, in ms. */
  retry(ms: number): void;
}

/**
 * Parses one stream: feed it the body's chunks as they arrive, split anywhere (inside a line
 * ending, a UTF-8 character or the leading byte order mark, which is dropped); it reports each
 * frame as soon as its blank line is read. A frame the stream ends in the middle of is dropped.
 */
export class SseParser {
  private readonly decoder = new TextDecoder();
  /** Text after the last line ending. */
  private rest = "";
  /** The last chunk ended with CR: a LF at the start of the next one ends no second line. */
  private afterCr = false;
  private data: string[] = [];
  private event = "";
  private id: string | undefined;

  constructor(private readonly sink: SseSink) {}

  /** Parses a chunk of the body. */
  push(chunk: Uint8Array): void {
    let text = this.decoder.decode(chunk, { stream: true });
    if (this.afterCr && text.length > 0) {
      if (text.startsWith("\n")) text = text.slice(1);
      this.afterCr = false;
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      // A CR ends its line at once (a server using CR alone is not left waiting for the next
      // chunk); a LF right after it is part of the same line ending.
      this.line(this.rest + text.slice(start, i));
      this.rest = "";
      if (c === 13) {
        if (i + 1 === text.length) this.afterCr = true;
        else if (text.charCodeAt(i + 1) === 10) i += 1;
      }
      start = i + 1;
    }
    this.rest += text.slice(start);
  }

  private line(line: string): void {
    if (line === "") return this.endFrame();
    if (line.startsWith(":")) return; // a comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.sink.retry(Number(value));
    // any other field is ignored
  }

  private endFrame(): void {
    const frame: SseFrame = {
      event: this.event || "message",
      data: this.data.length > 0 ? this.data.join("\n") : undefined,
      id: this.id,
    };
    this.data = [];
    this.event = "";
    this.id = undefined;
    if (frame.data !== undefined || frame.id !== undefined) this.sink.frame(frame);
  }
}
