//! How a connection to the server is made: plain TCP or TLS (`--base https://`), HTTP/1.1 or
//! HTTP/2 (`--http2`: ALPN `h2` over TLS, prior knowledge (h2c) over plain TCP).
//!
//! TLS does **not** verify the server's certificate: the load generator only ever talks to a
//! server on this machine (an `https://` base must be a loopback address), typically one started
//! with a throw-away self-signed certificate. It does check the handshake signatures, so the TLS
//! work on both sides is the real one.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

/// The scheme and protocol every connection of a run uses.
pub struct Transport {
    tls: Option<TlsConnector>,
    http2: bool,
    server_name: ServerName<'static>,
    /// `https` or `http`, for the absolute URIs HTTP/2 requests carry.
    scheme: &'static str,
}

impl Transport {
    /// For a server at `addr`; `tls` for an `https://` base, `http2` for `--http2`.
    pub fn new(addr: SocketAddr, tls: bool, http2: bool) -> Self {
        if tls && !addr.ip().is_loopback() {
            panic!(
                "--base https:// is for a loopback server only: the certificate is not verified"
            );
        }
        let tls = tls.then(|| {
            let provider = Arc::new(crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LoopbackVerifier(provider)))
                .with_no_client_auth();
            config.alpn_protocols = if http2 {
                vec![b"h2".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            TlsConnector::from(Arc::new(config))
        });
        Self {
            scheme: if tls.is_some() { "https" } else { "http" },
            tls,
            http2,
            server_name: ServerName::IpAddress(addr.ip().into()),
        }
    }

    /// The request target for `path`: the path for HTTP/1.1, an absolute URI for HTTP/2 (which
    /// sends `:scheme` and `:authority` instead of `Host`).
    pub fn request(
        &self,
        method: hyper::Method,
        host: &str,
        path: &str,
    ) -> hyper::http::request::Builder {
        if self.http2 {
            Request::builder()
                .method(method)
                .uri(format!("{}://{host}{path}", self.scheme))
        } else {
            Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, host)
        }
    }

    /// TLS (when on) and the HTTP handshake over `stream`; the connection is driven by a task
    /// of its own.
    pub async fn handshake<B>(&self, stream: TcpStream) -> Result<Sender<B>, String>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match &self.tls {
            Some(connector) => {
                let tls = connector
                    .connect(self.server_name.clone(), stream)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                self.http(TokioIo::new(tls)).await
            }
            None => self.http(TokioIo::new(stream)).await,
        }
    }

    async fn http<B, I>(&self, io: I) -> Result<Sender<B>, String>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        I: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    {
        if self.http2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H1(sender))
        }
    }
}

/// One connection's request sender, either protocol.
pub enum Sender<B> {
    H1(http1::SendRequest<B>),
    H2(http2::SendRequest<B>),
}

impl<B: Body + 'static> Sender<B> {
    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Sends `req`; the response head.
    pub async fn send_request(
        &mut self,
        req: Request<B>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

/// Accepts any certificate (see the module docs), checks the handshake signatures.
#[derive(Debug)]
struct LoopbackVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for LoopbackVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
