//! A real SSE client: an HTTP GET whose body is parsed by `eventsource-stream`.

use std::time::Duration;

use eventsource_stream::{Event, EventStream, Eventsource};
use futures_util::{Stream, StreamExt};

use super::WAIT;

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// What [`SseClient::next_or_end`] saw.
#[allow(dead_code)] // used by some test crates only
#[derive(Debug)]
pub enum Next {
    Event(Event),
    Quiet,
    /// The stream ended (`None`) or failed (the error).
    Ended(Option<String>),
}

/// A real SSE client: an HTTP GET whose body is parsed by `eventsource-stream`.
pub struct SseClient {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    events: EventStream<ByteStream>,
    /// Every byte received, for clients made by [`SseClient::connect_recorded`].
    raw: Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>,
}

impl SseClient {
    /// Connects and checks that the answer is 200; panics with the body otherwise.
    pub async fn connect(url: &str) -> SseClient {
        Self::connect_with(url, &[]).await
    }

    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> SseClient {
        let response = Self::request(url, headers).await;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("GET {url} answered {status}: {body}");
        }
        Self::from_response(response)
    }

    /// Sends the GET and returns the raw response (for tests of refusals).
    pub async fn request(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = reqwest::Client::new().get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        tokio::time::timeout(WAIT, req.send())
            .await
            .expect("SSE connect timed out")
            .expect("SSE connect failed")
    }

    pub fn from_response(response: reqwest::Response) -> SseClient {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes: ByteStream = Box::pin(response.bytes_stream());
        SseClient {
            status,
            headers,
            events: bytes.eventsource(),
            raw: None,
        }
    }

    /// [`SseClient::connect_with`] that also keeps every byte received, so a test can look at
    /// the frames as sent ([`SseClient::raw_text`]): the parsed [`Event::id`] is the *last* id
    /// seen, as the SSE spec wants, so only the bytes tell whether a frame had its own `id:`.
    pub async fn connect_recorded(url: &str, headers: &[(&str, &str)]) -> SseClient {
        let response = Self::request(url, headers).await;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("GET {url} answered {status}: {body}");
        }
        let headers = response.headers().clone();
        let raw = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = raw.clone();
        let bytes: ByteStream = Box::pin(response.bytes_stream().inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                sink.lock().expect("raw bytes").extend_from_slice(chunk);
            }
        }));
        SseClient {
            status,
            headers,
            events: bytes.eventsource(),
            raw: Some(raw),
        }
    }

    /// The bytes received so far, for a client made by [`SseClient::connect_recorded`].
    pub fn raw_text(&self) -> String {
        let raw = self
            .raw
            .as_ref()
            .expect("raw_text needs a client made by SseClient::connect_recorded");
        String::from_utf8_lossy(&raw.lock().expect("raw bytes")).into_owned()
    }

    /// The next event, or panics after [`WAIT`].
    pub async fn next(&mut self) -> Event {
        self.next_within(WAIT)
            .await
            .expect("no SSE event arrived in time")
    }

    /// The next event within `limit`, `None` if none came in time. Panics if the stream errs or
    /// ends meanwhile: a stream that stops is never mistaken for a quiet one (a test that
    /// expects the end uses [`SseClient::ended_within`]).
    pub async fn next_within(&mut self, limit: Duration) -> Option<Event> {
        match tokio::time::timeout(limit, self.events.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            Ok(Some(Err(e))) => panic!("SSE stream error: {e}"),
            Ok(None) => panic!("the SSE stream ended while an event or silence was expected"),
            Err(_) => None,
        }
    }

    /// The next event within `limit`, or that none came ([`Next::Quiet`]), or that the stream
    /// ended or failed ([`Next::Ended`], with the error): for readers that react to the end as
    /// `EventSource` does, by reconnecting with the last id.
    #[allow(dead_code)] // used by some test crates only
    pub async fn next_or_end(&mut self, limit: Duration) -> Next {
        match tokio::time::timeout(limit, self.events.next()).await {
            Ok(Some(Ok(event))) => Next::Event(event),
            Ok(Some(Err(e))) => Next::Ended(Some(e.to_string())),
            Ok(None) => Next::Ended(None),
            Err(_) => Next::Quiet,
        }
    }

    /// Panics with `why` if an event arrives within `limit`, or if the stream ends or errs
    /// meanwhile: only an open stream that stays silent is quiet.
    pub async fn assert_quiet(&mut self, limit: Duration, why: &str) {
        match tokio::time::timeout(limit, self.events.next()).await {
            Err(_) => {}
            Ok(Some(Ok(event))) => panic!("{why}: got {event:?}"),
            Ok(Some(Err(e))) => panic!("{why}: the stream failed instead of staying open: {e}"),
            Ok(None) => panic!("{why}: the stream ended instead of staying open"),
        }
    }

    /// Whether the server ended the stream cleanly within `limit` (events before the end are
    /// skipped). Panics on a stream error: a reset connection or a body cut short is not a
    /// clean end.
    pub async fn ended_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(None) => return true,
                Ok(Some(Err(e))) => panic!("the SSE stream failed instead of ending cleanly: {e}"),
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}
