//! A TCP proxy on a free loopback port in front of a server (Redis), which a test can cut and
//! heal: put it between ONE app instance and Redis so that only that instance loses Redis.

use std::time::Duration;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A loopback TCP proxy to `127.0.0.1:<upstream>`: one task per connection copying both ways.
/// Stops (and closes what it proxies) when dropped.
pub struct TcpProxy {
    pub port: u16,
    /// `true` while cut.
    cut: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `127.0.0.1:<upstream>`.
    /// Call it inside a tokio runtime (the proxy's tasks run on it).
    pub fn start(upstream: u16) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().unwrap().port();
        let listener = TcpListener::from_std(listener).expect("a tokio runtime runs the proxy");
        let (cut, _) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, upstream, cut.clone()));
        TcpProxy { port, cut, accept }
    }

    /// `redis://127.0.0.1:<proxy port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Closes every open proxied connection at once (both sides, with a TCP reset), and until
    /// [`TcpProxy::heal`] closes each new connection as soon as it is accepted.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // the connection tasks see the cut and close their sockets
        self.cut.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, upstream: u16, cut: watch::Sender<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // subscribed before looking, so a cut that comes after this point is seen
        let mut cut_seen = cut.subscribe();
        if *cut_seen.borrow_and_update() {
            abort(client);
            continue;
        }
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                abort(client);
                return;
            };
            let (mut client, mut server) = (client, server);
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let was_cut = tokio::select! {
                _ = copy_bidirectional(&mut client, &mut server) => false,
                _ = cut_seen.wait_for(|cut| *cut) => true,
            };
            if was_cut {
                abort(client);
                abort(server);
            }
        });
    }
}

/// Closes with a TCP reset: the peer sees its connection break at once.
fn abort(stream: TcpStream) {
    // SO_LINGER 0, then close: the kernel sends RST (a zero linger never blocks on close).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}
