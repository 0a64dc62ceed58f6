//! Binding the listener with a listen backlog deep enough for a reconnect storm.

use std::io;

use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};

/// The listen backlog [`bind`] asks for. Linux caps it at `net.core.somaxconn` (4,096 by default
/// since 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener for [`serve`](crate::serve()) with a listen backlog of
/// [`LISTEN_BACKLOG`] (tokio's [`TcpListener::bind`] asks for 1,024), `SO_REUSEADDR` set as
/// tokio does. Tries every address `addr` resolves to, in order, like `TcpListener::bind`.
///
/// Why it matters for push: after a deploy or a network blip every client of an instance
/// reconnects within about a second (`EventSource` retries by itself). Connections the kernel
/// has completed but the server has not accepted yet wait in the backlog; once it is full, new
/// SYNs are dropped and those clients retransmit after 1 s, then 3 s, so a storm's slowest
/// clients catch up seconds later than they could.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = livepush::serve::bind("127.0.0.1:0").await?;
/// assert!(listener.local_addr()?.port() > 0);
/// # Ok(())
/// # }
/// ```
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let bound = socket.and_then(|socket| {
            #[cfg(unix)]
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to no socket address",
        )
    }))
}
