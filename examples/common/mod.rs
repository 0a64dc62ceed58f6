//! What every example shares: logs, the hub and the listener from the environment, and serving
//! until Ctrl-C or SIGTERM with a graceful shutdown.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `HOST` | address to listen on (an IP or a host name) | `127.0.0.1` |
//! | `PORT` | port to listen on | `3000` |
//! | `REDIS_URL`, `NATS_URL`, `LIVEPUSH_*` | the hub and its broker, see `livepush::HubBuilder::from_env` | in-memory |
//! | `LIVEPUSH_HEADER_READ_TIMEOUT_SECS`, `_BODY_READ_TIMEOUT_SECS`, `_IDLE_TIMEOUT_SECS`, `_MAX_PENDING_HEADS`, `_MAX_PENDING_HEADS_PER_PEER`, `_WRITE_TIMEOUT_SECS`, `_DRAIN_SECS` | the server, see `livepush::serve::ServeConfig::from_env` | 10 s, 30 s, 60 s, 512, 256, 10 s, 5 s |
//! | `LIVEPUSH_TLS_CERT`, `LIVEPUSH_TLS_KEY` | PEM files (certificate chain, private key): serve HTTPS (HTTP/1.1 and h2 by ALPN) with `livepush::serve::serve_tls`; both or neither | plain HTTP |
//! | `RUST_LOG` | log filter | `info` |
//!
//! An invalid value stops the program with a message naming it and exit status 2.
//!
//! Examples include this file with `#[path = "../common/mod.rs"] mod common;`, so each one stays a
//! single `cargo run --bin NAME` away and the boilerplate lives in one place.
#![allow(dead_code)] // not every example uses every helper

pub mod api;
pub mod clock;

use std::fmt::Display;
use std::io::IsTerminal;

use axum::Router;
use livepush::{Hub, HubBuilder};
use tracing_subscriber::EnvFilter;

/// Logs to stdout, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

/// Prints `problem` and exits with status 2: for settings the program cannot run with.
pub fn exit_with(problem: impl Display) -> ! {
    eprintln!("error: {problem}");
    std::process::exit(2)
}

/// The hub configured from the environment (`REDIS_URL`, `NATS_URL`, `LIVEPUSH_*`), or exit.
pub fn hub_from_env() -> Hub {
    Hub::from_env().unwrap_or_else(|e| exit_with(format_args!("cannot configure livepush: {e}")))
}

/// Like [`hub_from_env`], with code-only settings (an authorize hook, for example) added by
/// `customize`.
pub fn hub_from_env_with(customize: impl FnOnce(HubBuilder) -> HubBuilder) -> Hub {
    // `HubBuilder::from_env`, not `from_config(Config::from_env())`: the latter reads only the
    // hub's settings and would leave `REDIS_URL` / `NATS_URL` unheeded.
    let builder = HubBuilder::from_env()
        .unwrap_or_else(|e| exit_with(format_args!("cannot configure livepush: {e}")));
    customize(builder)
        .build()
        .unwrap_or_else(|e| exit_with(format_args!("cannot configure livepush: {e}")))
}

/// `HOST` and `PORT`, or exit.
pub fn listen_address() -> (String, u16) {
    let host = std::env::var("HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = match std::env::var("PORT") {
        Ok(p) if !p.trim().is_empty() => p.trim().parse::<u16>().unwrap_or_else(|_| {
            exit_with(format_args!(
                "PORT={p:?} is invalid: expected a port number from 0 to 65535"
            ))
        }),
        _ => 3000,
    };
    (host, port)
}

/// Serves `app` on `HOST:PORT` until Ctrl-C or SIGTERM; then ends every SSE stream (so the
/// server does not wait on clients that never hang up) and lets connections finish for the
/// drain deadline (`LIVEPUSH_DRAIN_SECS`, 5 s) at most.
pub async fn serve(name: &str, app: Router, hub: &Hub) {
    serve_with(name, app, hub, |serve| serve).await
}

/// The server settings from the environment (`LIVEPUSH_HEADER_READ_TIMEOUT_SECS`, ...), or exit.
pub fn serve_config_from_env() -> livepush::serve::ServeConfig {
    livepush::serve::ServeConfig::from_env()
        .unwrap_or_else(|e| exit_with(format_args!("cannot configure the server: {e}")))
}

/// Like [`serve`], with the server settings from the environment changed by `tune` (the `Serve`
/// methods of the settings).
pub async fn serve_with(
    name: &str,
    app: Router,
    hub: &Hub,
    tune: impl FnOnce(livepush::serve::Serve) -> livepush::serve::Serve,
) {
    let (host, port) = listen_address();
    // `livepush::serve` deepens the listen backlog to 4,096 itself
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .unwrap_or_else(|e| exit_with(format_args!("cannot listen on {host}:{port}: {e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| exit_with(format_args!("cannot read the listening address: {e}")));
    let tls = tls_from_env();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        broker = hub.broker_kind(),
        "{name} listening on {scheme}://{addr}"
    );
    // `livepush::serve`: HTTP/1.1 and h2c (h2 and HTTP/1.1 by ALPN over TLS), header-read, idle,
    // write and drain deadlines, TCP_NODELAY (see its docs).
    let served = match tls {
        Some(tls) => livepush::serve::serve_tls(listener, app, tls),
        None => livepush::serve(listener, app),
    }
    .config(serve_config_from_env());
    let served = tune(served)
        .with_graceful_shutdown(hub.shutdown_on(shutdown_signal()))
        .await;
    if let Err(e) = served {
        exit_with(format_args!("server error: {e}"));
    }
    tracing::info!("{name} stopped");
}

/// The TLS settings from `LIVEPUSH_TLS_CERT` and `LIVEPUSH_TLS_KEY` (PEM files), `None` when
/// neither is set, or exit: one without the other, an unreadable file or a key that does not fit
/// the certificate stops start-up with a message naming the variable.
pub fn tls_from_env() -> Option<std::sync::Arc<livepush::serve::rustls::ServerConfig>> {
    use livepush::serve::rustls::pki_types::pem::PemObject;
    use livepush::serve::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (cert, key) = match (var("LIVEPUSH_TLS_CERT"), var("LIVEPUSH_TLS_KEY")) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => exit_with("LIVEPUSH_TLS_CERT is set without LIVEPUSH_TLS_KEY"),
        (None, Some(_)) => exit_with("LIVEPUSH_TLS_KEY is set without LIVEPUSH_TLS_CERT"),
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| exit_with(format_args!("LIVEPUSH_TLS_CERT={cert:?}: {e}")));
    if chain.is_empty() {
        exit_with(format_args!(
            "LIVEPUSH_TLS_CERT={cert:?} holds no PEM certificate"
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(&key)
        .unwrap_or_else(|e| exit_with(format_args!("LIVEPUSH_TLS_KEY={key:?}: {e}")));
    let config = livepush::serve::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .unwrap_or_else(|e| {
            exit_with(format_args!(
                "LIVEPUSH_TLS_CERT and LIVEPUSH_TLS_KEY do not make a TLS identity: {e}"
            ))
        });
    Some(std::sync::Arc::new(config))
}

/// Completes on Ctrl-C, or on SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(%e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!(%e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: closing event streams");
}
