//! `NATS_URL`: `nats://[user:password@]host:port[,host:port...][?options]` (`tls://` for TLS).
//!
//! The servers and the credentials in the URL go to async-nats as they are (every listed host
//! gets the scheme and the credentials of the first). The query is ours:
//!
//! | option | meaning | default |
//! | --- | --- | --- |
//! | `prefix` | the first token of every subject | `livepush` |
//! | `stream` | the JetStream stream's name | the prefix, upper case |
//! | `storage` | `file` or `memory` | `file` |
//! | `replicas` | the stream's replicas (1 to 5) | 1 |
//! | `partitions` | streams the topics are spread over (1 to 1296), each its own sequence and Raft group (`subject.rs`) | 1 |
//! | `token` | token authentication | none |
//! | `creds` | path of a credentials file (JWT + NKey seed) | none |
//! | `nkey` | an NKey seed (`SU...`) | none |
//! | `pending` | live messages a topic's subscription holds before async-nats drops (a slow consumer, caught up from the stream) | async-nats's 65,536 |

use async_nats::jetstream::stream::StorageType;
use async_nats::ServerAddr;

use super::subject::Names;
use crate::broker::{BrokerError, Cause};

/// What `NATS_URL` says.
#[derive(Debug)]
pub(super) struct Address {
    pub(super) servers: Vec<ServerAddr>,
    pub(super) names: Names,
    pub(super) storage: StorageType,
    pub(super) replicas: usize,
    pub(super) auth: Auth,
    /// `pending`: async-nats's subscription capacity.
    pub(super) pending: Option<usize>,
}

/// Authentication that does not fit in the URL's user and password.
#[derive(Debug, Default)]
pub(super) struct Auth {
    pub(super) token: Option<String>,
    pub(super) creds: Option<String>,
    pub(super) nkey: Option<String>,
}

fn invalid(url: &str, why: impl std::fmt::Display) -> BrokerError {
    // the URL may hold a password: only its scheme is shown
    let scheme = url.split("://").next().unwrap_or("");
    BrokerError::InvalidAddress(Cause::new(format!("NATS_URL ({scheme}://…): {why}")))
}

impl Address {
    pub(super) fn parse(url: &str) -> Result<Address, BrokerError> {
        let (servers, query) = url.split_once('?').unwrap_or((url, ""));
        let (scheme, rest) = servers
            .split_once("://")
            .ok_or_else(|| invalid(url, "expected nats://host:port or tls://host:port"))?;
        if !matches!(scheme, "nats" | "tls") {
            return Err(invalid(url, format!("unknown scheme {scheme:?}")));
        }
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), rest),
        };
        let servers = hosts
            .split(',')
            .map(|host| {
                format!("{scheme}://{userinfo}{host}")
                    .parse::<ServerAddr>()
                    .map_err(|e| invalid(url, format!("host {host:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut address = Address {
            servers,
            names: Names::new("livepush", None).expect("the default prefix is valid"),
            storage: StorageType::File,
            replicas: 1,
            auth: Auth::default(),
            pending: None,
        };
        address.read_query(url, query)?;
        Ok(address)
    }

    fn read_query(&mut self, url: &str, query: &str) -> Result<(), BrokerError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| invalid(url, e))?;
        let (mut prefix, mut stream, mut partitions) = ("livepush".to_owned(), None, 1);
        for (key, value) in pairs {
            match key.as_str() {
                "prefix" => prefix = value,
                "stream" => stream = Some(value),
                "storage" if value == "file" => self.storage = StorageType::File,
                "storage" if value == "memory" => self.storage = StorageType::Memory,
                "replicas" => {
                    self.replicas = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=5).contains(n))
                        .ok_or_else(|| invalid(url, "replicas must be 1 to 5"))?
                }
                "partitions" => {
                    partitions = value
                        .parse()
                        .map_err(|_| invalid(url, "partitions must be a count"))?
                }
                "pending" => {
                    self.pending =
                        Some(
                            value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                                invalid(url, "pending must be a count of at least 1")
                            })?,
                        )
                }
                "token" => self.auth.token = Some(value),
                "creds" => self.auth.creds = Some(value),
                "nkey" => self.auth.nkey = Some(value),
                _ => return Err(invalid(url, format!("unknown option {key:?}={value:?}"))),
            }
        }
        self.names = Names::new(&prefix, stream.as_deref())
            .and_then(|names| names.partitioned(partitions))
            .map_err(|e| invalid(url, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_servers_credentials_and_options() {
        let a = Address::parse(
            "nats://u:p@h1:4222,h2:4223?prefix=app&storage=memory&replicas=3&pending=8",
        )
        .unwrap();
        assert_eq!(a.pending, Some(8));
        assert_eq!(a.servers.len(), 2);
        assert_eq!(a.servers[1].username(), Some("u"));
        assert_eq!(a.servers[1].password(), Some("p"));
        assert_eq!(a.servers[1].port(), 4223);
        assert_eq!(a.names.stream, "APP");
        assert_eq!(a.storage, StorageType::Memory);
        assert_eq!(a.replicas, 3);
        assert_eq!(a.names.partitions(), 1);
        let a = Address::parse("nats://h:1?partitions=4").unwrap();
        assert_eq!(a.names.partitions(), 4);
        assert_eq!(a.names.stream_of(2), "LIVEPUSH_p2");
        assert!(Address::parse("tls://h:4222").unwrap().servers[0].tls_required());
        for bad in [
            "h:4222",
            "redis://h:1",
            "nats://h:1?replicas=9",
            "nats://h:1?storage=disk",
            "nats://h:1?what=1",
            "nats://h:1?prefix=a.b",
            "nats://h:1?pending=0",
            "nats://h:1?partitions=0",
            "nats://h:1?partitions=1297",
            "nats://h:1?partitions=x",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
        let e = Address::parse("nats://u:secret@h:1?what=1").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
