//! Reading an event stream as a client does: the parsing rules of the WHATWG HTML standard
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>),
//! written from the standard rather than from livepush's encoder, so that tests of the encoder
//! can use it as the judge.

use serde::de::DeserializeOwned;

/// One block of an event stream, the lines up to the blank line that ends it.
///
/// A block with `data` is an event to `EventSource`; one without (a heartbeat comment, a lone
/// `retry:`) is not dispatched, but tests often want to see it, so it is a frame too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Frame {
    /// The last `event:` field; `None` for an unnamed event (`message` to `EventSource`).
    pub event: Option<String>,
    /// The `data:` fields joined with `\n`; `None` when the block has none.
    pub data: Option<String>,
    /// The last `id:` field of the block (one holding NUL is ignored, as the standard says).
    pub id: Option<String>,
    /// The last valid `retry:` field, in milliseconds.
    pub retry: Option<u64>,
    /// The comment lines (`:` and what follows it, the leading space removed).
    pub comments: Vec<String>,
}

impl Frame {
    /// Whether `EventSource` dispatches this block as an event (it has data).
    pub fn is_event(&self) -> bool {
        self.data.is_some()
    }

    /// The event name `EventSource` reports: the `event:` field, or `message` when it is absent
    /// or empty.
    pub fn event_name(&self) -> &str {
        self.event
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or("message")
    }

    /// The data read as JSON into `T`.
    ///
    /// # Panics
    /// When the frame has no data or the data is not a `T`, with the frame in the message.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        let data = self.data.as_deref().unwrap_or_else(|| {
            panic!("frame has no data to read as JSON: {self:?}");
        });
        serde_json::from_str(data).unwrap_or_else(|error| {
            panic!(
                "frame data is not a {}: {error}\n  frame: {self:?}",
                std::any::type_name::<T>()
            )
        })
    }
}

/// An incremental event-stream parser: bytes in, in chunks cut anywhere, complete frames out.
///
/// ```
/// use livepush::testing::FrameParser;
///
/// let mut parser = FrameParser::default();
/// assert!(parser.feed(b"event: created\r\ndata: {\"id\"").is_empty());
/// let frames = parser.feed(b":1}\rid: 7\n\n: heartbeat\n\n");
/// assert_eq!(frames[0].event.as_deref(), Some("created"));
/// assert_eq!(frames[0].data.as_deref(), Some("{\"id\":1}"));
/// assert_eq!(frames[0].id.as_deref(), Some("7"));
/// assert_eq!(frames[1].comments, ["heartbeat"]);
/// assert!(!frames[1].is_event());
/// ```
#[derive(Debug, Default)]
pub struct FrameParser {
    /// The bytes of the line being read.
    line: Vec<u8>,
    /// The last line ended with CR: an LF right after it belongs to that line end.
    after_cr: bool,
    /// Whether the first line was seen (a BOM is dropped from it only).
    started: bool,
    /// The block being read, and whether any line was.
    frame: Frame,
    touched: bool,
}

impl FrameParser {
    /// Reads `bytes`, returning the frames that they complete. A block that the stream has not
    /// ended with a blank line stays pending (the standard drops it at end of stream).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    frames.extend(self.line_ended(&line));
                }
                _ => self.line.push(byte),
            }
        }
        frames
    }

    fn line_ended(&mut self, line: &[u8]) -> Option<Frame> {
        let text = String::from_utf8_lossy(line);
        let mut line = text.as_ref();
        if !std::mem::replace(&mut self.started, true) {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            let frame = std::mem::take(&mut self.frame);
            return std::mem::replace(&mut self.touched, false).then_some(frame);
        }
        self.touched = true;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        let frame = &mut self.frame;
        match field {
            "" => frame.comments.push(value.to_owned()),
            "event" => frame.event = Some(value.to_owned()),
            "data" => match &mut frame.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => frame.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => frame.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                frame.retry = value.parse().ok();
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stream: &[u8]) -> Vec<Frame> {
        FrameParser::default().feed(stream)
    }

    #[test]
    fn every_line_end_ends_a_line_even_split_between_chunks() {
        let mut parser = FrameParser::default();
        assert!(parser.feed(b"data: a\r").is_empty());
        // The LF of that CRLF arrives in the next chunk: it is not a second (blank) line.
        assert!(parser.feed(b"\ndata: b\n").is_empty());
        let frames = parser.feed(b"\r\n");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data.as_deref(), Some("a\nb"));
        let frames = read(b"data: x\rdata: y\r\r");
        assert_eq!(frames[0].data.as_deref(), Some("x\ny"));
    }

    #[test]
    fn fields_follow_the_standard() {
        // A BOM at the start only; a field without a colon has an empty value; one space after
        // the colon is dropped, a second is kept; unknown fields are ignored.
        let frames = read(b"\xEF\xBB\xBFdata\nevent:  two\nfoo: bar\ndata:x\n\n");
        assert_eq!(frames[0].data.as_deref(), Some("\nx"));
        assert_eq!(frames[0].event.as_deref(), Some(" two"));
        // An id with NUL is ignored; `retry` takes digits only.
        let frames = read(b"id: 4\nid: 5\0\nretry: 10\nretry: 1x\ndata: d\n\n");
        assert_eq!(frames[0].id.as_deref(), Some("4"));
        assert_eq!(frames[0].retry, Some(10));
        // Without data, a block is not an event; an empty `event:` is a message.
        let frames = read(b": beat\n\nevent:\ndata\n\n");
        assert_eq!(frames[0].comments, ["beat"]);
        assert!(!frames[0].is_event());
        assert_eq!(frames[1].event_name(), "message");
        assert_eq!(frames[1].data.as_deref(), Some(""));
    }

    #[test]
    fn blank_lines_alone_and_an_unfinished_block_give_nothing() {
        assert!(read(b"\n\n\r\n").is_empty());
        assert!(read(b"data: never dispatched\n").is_empty());
    }

    #[test]
    #[should_panic(expected = "frame data is not a u32")]
    fn reading_data_as_the_wrong_type_names_the_type_and_the_frame() {
        read(b"data: \"text\"\n\n")[0].json::<u32>();
    }
}
