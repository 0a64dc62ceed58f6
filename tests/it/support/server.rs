//! axum apps served on loopback ports, with or without a graceful shutdown the test triggers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An axum app served on 127.0.0.1 on a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(app: Router) -> TestServer {
        Self::start_with(app, |serve| serve).await
    }

    /// Like [`TestServer::start`], with `configure` applied to the `livepush::serve` builder.
    pub async fn start_with(
        app: Router,
        configure: impl FnOnce(livepush::serve::Serve) -> livepush::serve::Serve + Send + 'static,
    ) -> TestServer {
        Self::start_serving(|listener| configure(livepush::serve(listener, app))).await
    }

    /// Like [`TestServer::start_with`], over TLS with `tls` (`livepush::serve::serve_tls`).
    pub async fn start_tls_with(
        app: Router,
        tls: Arc<livepush::serve::rustls::ServerConfig>,
        configure: impl FnOnce(livepush::serve::Serve) -> livepush::serve::Serve + Send + 'static,
    ) -> TestServer {
        Self::start_serving(|listener| configure(livepush::serve::serve_tls(listener, app, tls)))
            .await
    }

    async fn start_serving(
        serve: impl FnOnce(TcpListener) -> livepush::serve::Serve,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let serve = serve(listener);
        let handle = tokio::spawn(async move { serve.await.expect("serve") });
        TestServer { addr, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// An axum app on a loopback port whose graceful shutdown the test triggers.
pub struct GracefulServer {
    pub addr: SocketAddr,
    trigger: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<()>,
}

impl GracefulServer {
    /// Serves `app` with `livepush::serve(..).with_graceful_shutdown(hub.shutdown_on(signal))`.
    pub async fn start(app: Router, hub: &livepush::Hub) -> GracefulServer {
        Self::start_with(app, hub, |serve| serve).await
    }

    /// Like [`GracefulServer::start`], with `configure` applied to the `livepush::serve` builder
    /// (e.g. a drain deadline longer than any test, so that a prompt exit proves the server did
    /// not need it).
    pub async fn start_with(
        app: Router,
        hub: &livepush::Hub,
        configure: impl FnOnce(livepush::serve::Serve) -> livepush::serve::Serve + Send + 'static,
    ) -> GracefulServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (trigger, signal) = oneshot::channel::<()>();
        let shutdown = hub.shutdown_on(async move {
            let _ = signal.await;
        });
        let handle = tokio::spawn(async move {
            configure(livepush::serve(listener, app))
                .with_graceful_shutdown(shutdown)
                .await
                .expect("serve");
        });
        GracefulServer {
            addr,
            trigger: Some(trigger),
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends the shutdown signal.
    pub fn shutdown(&mut self) {
        if let Some(trigger) = self.trigger.take() {
            let _ = trigger.send(());
        }
    }
}

impl Drop for GracefulServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
