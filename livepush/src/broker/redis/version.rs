//! The server's version, checked at every connection: the history script reads `XINFO STREAM`
//! `entries-added` (Redis 7.0), and the cluster engine publishes with `SPUBLISH` (7.0). On an
//! older server a trimmed stream would be judged complete and a client resuming across the trim
//! would get no `livepush.reset`: a silent gap. So an older server is refused, with an error
//! that names the version found and the minimum, and the connection task keeps retrying (the
//! server may be upgraded in place) while `/health/ready` answers 503.
//!
//! The version is `INFO server`'s `redis_version`. Forks report their own name and version
//! beside it (`valkey_version`, `dragonfly_version`, `keydb_version`) and a `redis_version` of
//! their choosing (Valkey: 7.2.4, which passes). Only `redis_version` decides; the fork's own
//! version is named in the error.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError};

/// The oldest Redis the scripts work on.
pub(super) const MINIMUM: (u32, u32) = (7, 0);

/// Fields that name a fork and its own version, in `INFO server`.
const FORKS: &[(&str, &str)] = &[
    ("valkey_version", "Valkey"),
    ("dragonfly_version", "DragonflyDB"),
    ("keydb_version", "KeyDB"),
];

/// Whether the server that answered `INFO server` with `info` is recent enough; else the error
/// to show, naming what was found and the minimum.
pub(super) fn check(info: &str) -> Result<(), String> {
    let field = |name: &str| {
        info.lines().find_map(|l| {
            l.trim_end_matches('\r')
                .strip_prefix(name)?
                .strip_prefix(':')
        })
    };
    let Some(version) = field("redis_version") else {
        return Err("the server's INFO names no redis_version".into());
    };
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().ok());
    let found = match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => return Err(format!("the server reports redis_version {version:?}")),
    };
    if found >= MINIMUM {
        return Ok(());
    }
    let fork = FORKS
        .iter()
        .find_map(|(f, name)| field(f).map(|v| format!("{name} {v}, ")))
        .unwrap_or_default();
    Err(format!(
        "the server is too old ({fork}redis_version {version}): livepush needs Redis {}.{} or later (its history script reads XINFO STREAM entries-added)",
        MINIMUM.0, MINIMUM.1
    ))
}

fn refused(why: String) -> RedisError {
    RedisError::from((ErrorKind::Client, "unsupported server version", why))
}

/// [`check`] on one server.
pub(super) async fn check_server(conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    check(&info).map_err(refused)
}

/// [`check`] on every master of a cluster (`INFO` goes to all of them).
pub(super) async fn check_cluster(conn: &mut ClusterConnection) -> Result<(), RedisError> {
    let infos: HashMap<String, String> = redis::cmd("INFO").arg("server").query_async(conn).await?;
    for (node, info) in infos {
        check(&info).map_err(|why| refused(format!("{node}: {why}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `INFO server` as redis-server 7.0.15 (Debian 12) answered it, with its `\r\n` line ends.
    fn captured() -> String {
        include_str!("testdata/info-server-7.0.15.txt").replace('\n', "\r\n")
    }

    #[test]
    fn accepts_7_0_and_later_and_names_what_it_refuses() {
        let info = captured();
        assert_eq!(check(&info), Ok(()));
        for newer in ["7.2.4", "8.0.0", "10.1.2"] {
            assert_eq!(check(&info.replace("7.0.15", newer)), Ok(()), "{newer}");
        }
        let old = check(&info.replace("7.0.15", "6.2.14")).unwrap_err();
        assert!(old.contains("redis_version 6.2.14"), "{old}");
        assert!(old.contains("Redis 7.0 or later"), "{old}");
        // a fork is named by its own version; redis_version decides
        let keydb = info.replace(
            "redis_version:7.0.15",
            "redis_version:6.3.4\r\nkeydb_version:6.3.4",
        );
        let refused = check(&keydb).unwrap_err();
        assert!(
            refused.contains("KeyDB 6.3.4, redis_version 6.3.4"),
            "{refused}"
        );
        let valkey = info.replace(
            "redis_version:7.0.15",
            "redis_version:7.2.4\r\nvalkey_version:8.0.1",
        );
        assert_eq!(check(&valkey), Ok(()));
        for broken in ["redis_version:seven", "redis_version:7", "no_version:7.0.0"] {
            let info = info.replace("redis_version:7.0.15", broken);
            assert!(check(&info).is_err(), "{broken}");
        }
    }

    /// Answers one client as a Redis server that reports `version` would: HELLO, CLIENT
    /// SETINFO, PING and `INFO server` (the captured reply with the version edited), in RESP.
    async fn old_server(listener: tokio::net::TcpListener, version: &'static str) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (socket, _) = listener.accept().await.expect("a client");
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        // a command is `*N` then N pairs of `$len` and the argument
        while let Ok(Some(head)) = lines.next_line().await {
            let n: usize = head.trim_start_matches('*').parse().expect("an array");
            let mut args = Vec::new();
            for _ in 0..n {
                lines.next_line().await.expect("a length");
                args.push(
                    lines
                        .next_line()
                        .await
                        .expect("an argument")
                        .expect("an argument"),
                );
            }
            let reply = match args[0].to_ascii_uppercase().as_str() {
                "HELLO" => "%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n".to_owned(),
                "CLIENT" => "+OK\r\n".to_owned(),
                "PING" => "+PONG\r\n".to_owned(),
                "INFO" => {
                    let info = captured().replace("7.0.15", version);
                    format!("${}\r\n{info}\r\n", info.len())
                }
                other => format!("-ERR unknown command '{other}'\r\n"),
            };
            write.write_all(reply.as_bytes()).await.expect("a reply");
        }
    }

    #[tokio::test]
    async fn a_connection_to_an_older_server_is_refused_naming_both_versions() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(old_server(listener, "6.2.14"));
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{port}/?protocol=resp3")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let error = check_server(&mut conn).await.unwrap_err().to_string();
        assert!(error.contains("redis_version 6.2.14"), "{error}");
        assert!(error.contains("Redis 7.0 or later"), "{error}");
    }
}
