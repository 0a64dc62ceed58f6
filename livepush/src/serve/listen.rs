//! The listener's backlog, deep enough for a reconnect storm.

use tokio::net::TcpListener;

/// The listen backlog [`serve`](crate::serve()) asks for. Linux caps it at
/// `net.core.somaxconn` (4,096 by default since 5.4).
const LISTEN_BACKLOG: i32 = 4096;

/// Asks for a listen backlog of [`LISTEN_BACKLOG`] on `listener` (tokio's
/// [`TcpListener::bind`] asks for less: 128 measured with tokio 1.54); `listen` on a socket
/// that listens already only changes its backlog.
///
/// Why it matters for push: after a deploy or a network blip every client of an instance
/// reconnects within about a second (`EventSource` retries by itself). Connections the kernel
/// has completed but the server has not accepted yet wait in the backlog; once it is full, new
/// SYNs are dropped and those clients retransmit after 1 s, then 3 s, so a storm's slowest
/// clients catch up seconds later than they could.
pub(super) fn deepen_backlog(listener: &TcpListener) {
    if let Err(error) = socket2::SockRef::from(listener).listen(LISTEN_BACKLOG) {
        // Not fatal: the server works with the backlog the listener was bound with.
        tracing::debug!(%error, "cannot deepen the listen backlog");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ss` shows a listening socket's backlog as its Send-Q.
    fn backlog_of(port: u16) -> u32 {
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let row: Vec<&str> = text.split_whitespace().collect();
        row[2]
            .parse()
            .unwrap_or_else(|_| panic!("ss printed {text:?}"))
    }

    #[tokio::test]
    async fn the_backlog_is_deepened_and_the_listener_still_accepts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deep = somaxconn.min(LISTEN_BACKLOG as u32);
        let before = backlog_of(addr.port());
        assert!(before < deep, "tokio's backlog {before} is already {deep}");
        deepen_backlog(&listener);
        assert_eq!(backlog_of(addr.port()), deep);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (_accepted, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.await.unwrap().unwrap().local_addr().unwrap());
    }
}
