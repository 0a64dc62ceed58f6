//! TLS for tests: a throw-away certificate the server presents and clients trust, and a TLS
//! client connection for tests that read and write the bytes themselves.

use std::net::SocketAddr;
use std::sync::Arc;

use livepush::serve::rustls;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for `localhost` and 127.0.0.1, and the server configuration that
/// presents it (`livepush::serve::serve_tls` sets its ALPN list).
pub fn certificate() -> (rcgen::CertifiedKey, Arc<rustls::ServerConfig>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    (certified, Arc::new(config))
}

/// A TLS connection over `stream` to a server presenting `certified`, offering the `alpn`
/// protocols (none: no ALPN extension, as a client that predates it).
pub async fn connect_over(
    stream: TcpStream,
    certified: &rcgen::CertifiedKey,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, stream).await.unwrap()
}

/// [`connect_over`] a new TCP connection to `addr`.
pub async fn connect(
    addr: SocketAddr,
    certified: &rcgen::CertifiedKey,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    connect_over(stream, certified, alpn).await
}
