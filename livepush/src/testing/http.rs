//! The transport of [`Client::http`](super::Client::http): each request on a fresh TCP
//! connection with hyper's HTTP/1.1 client, so a dropped [`EventStream`](super::EventStream)
//! closes its connection at once, as a closed `EventSource` does (a server then frees the
//! stream's cap slot).

use axum::body::Body;
use axum::http::uri::PathAndQuery;
use axum::http::{header, HeaderValue, Request, Uri};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: a `host:port` and a path prefix.
#[derive(Debug)]
pub(super) struct HttpBase {
    /// `host:port`, to connect to and to send as `Host`.
    authority: String,
    host: HeaderValue,
    /// The base URL's path without its trailing `/` (empty for the root).
    prefix: String,
}

impl HttpBase {
    /// # Panics
    /// When `base_url` is not an `http://` URL with a host.
    pub(super) fn parse(base_url: &str) -> HttpBase {
        let uri: Uri = base_url
            .parse()
            .unwrap_or_else(|error| panic!("not a base URL: {base_url:?}: {error}"));
        if uri.scheme_str() != Some("http") {
            panic!("Client::http speaks plain http://, not {base_url:?}");
        }
        let Some(authority) = uri.authority() else {
            panic!("a base URL needs a host: {base_url:?}");
        };
        let authority = match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        HttpBase {
            host: HeaderValue::from_str(&authority).expect("an authority is a header value"),
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        }
    }

    /// Sends `request` (its URI a path and query, as for the in-process client) on a new
    /// connection; the response's body streams from that connection.
    ///
    /// # Panics
    /// When the server cannot be reached or does not answer with HTTP.
    pub(super) async fn send(&self, request: Request<Body>) -> Response {
        let (mut parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let target = format!("{}{target}", self.prefix);
        parts.uri = target
            .parse()
            .unwrap_or_else(|error| panic!("not a request target: {target:?}: {error}"));
        parts
            .headers
            .entry(header::HOST)
            .or_insert_with(|| self.host.clone());
        let stream = TcpStream::connect(&self.authority)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.authority));
        // Frames are small writes, and tests read them one by one: no Nagle delay on requests.
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap_or_else(|error| panic!("HTTP handshake with {}: {error}", self.authority));
        // The connection task ends when the response body is read to its end or dropped.
        tokio::spawn(connection);
        let method = parts.method.clone();
        match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(response) => response.map(Body::new),
            Err(error) => panic!("{method} {} {target} failed: {error}", self.authority),
        }
    }
}
