//! Where the broker connects: one Redis server, the master that Redis Sentinel names, or the
//! seed nodes of a Redis Cluster.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, ProtocolVersion, PushInfo,
    RedisError,
};
use tokio::sync::mpsc;

use crate::broker::BrokerError;

/// Longest wait for a TCP connection, and for any reply.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// `redis-rs` retries a command after MOVED/ASK, a lost node or CLUSTERDOWN; a few tries cover
/// a redirect and a slot-map refresh, and a failover (seconds) is left to the hub's retry
/// buffer instead of holding the publisher.
const RETRIES: u32 = 3;
/// Longest wait for the sentinels to name a master.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The timeouts of every connection to one server ([`CONNECT_TIMEOUT`], [`RESPONSE_TIMEOUT`]).
pub(super) fn timeouts() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// The server to connect to, resolved again before every connection attempt: a Sentinel
/// deployment may have promoted another master since the last one.
pub(super) enum Target {
    /// `redis://` or `rediss://`.
    Server(Client),
    /// `redis+sentinel://`: asks the sentinels for the current master, and checks with `ROLE`
    /// that it is one.
    Sentinel {
        client: Box<SentinelClient>,
        master: String,
    },
}

impl Target {
    /// Parses `url`. Errors never repeat the URL, which may hold a password.
    pub(super) fn parse(url: &str) -> Result<Target, BrokerError> {
        match url.strip_prefix("redis+sentinel://") {
            Some(rest) => sentinel(rest),
            None => server(url),
        }
    }

    /// A client for the server to connect to now.
    pub(super) async fn resolve(&mut self) -> Result<Client, RedisError> {
        match self {
            Target::Server(client) => Ok(client.clone()),
            Target::Sentinel { client, .. } => client.async_get_client().await,
        }
    }

    /// [`Target::resolve`], failing when the sentinels name no master within a few seconds.
    pub(super) async fn resolve_in_time(&mut self) -> Result<Client, RedisError> {
        tokio::time::timeout(RESOLVE_TIMEOUT, self.resolve())
            .await
            .map_err(|_| {
                let what = "the sentinels did not name a master in time";
                RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
            })?
    }

    /// What to name in logs: the address or the master name, never credentials.
    pub(super) fn describe(&self) -> String {
        match self {
            Target::Server(client) => client.get_connection_info().addr().to_string(),
            Target::Sentinel { master, .. } => format!("sentinel master {master:?}"),
        }
    }
}

fn invalid(what: &str) -> BrokerError {
    BrokerError::InvalidAddress(format!("invalid Redis URL: {what}").into())
}

/// RESP3: pub/sub messages arrive as push frames on an ordinary multiplexed connection.
fn server(url: &str) -> Result<Target, BrokerError> {
    let info = url
        .into_connection_info()
        .map_err(|e| invalid(e.category()))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client =
        Client::open(info.set_redis_settings(settings)).map_err(|e| invalid(e.category()))?;
    Ok(Target::Server(client))
}

/// `[user:password@]host:port[,host:port...]/<master-name>[?db=N]`; the credentials and the
/// database are those of the Redis servers (the sentinels are asked without credentials).
fn sentinel(rest: &str) -> Result<Target, BrokerError> {
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("redis+sentinel:// needs /<master-name> after the hosts"))?;
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let (master, query) = match path.split_once('?') {
        Some((master, query)) => (master, Some(query)),
        None => (path, None),
    };
    let master = decode(master)?;
    if master.is_empty() {
        return Err(invalid(
            "redis+sentinel:// needs /<master-name> after the hosts",
        ));
    }
    let mut sentinels = Vec::new();
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        let (name, port) = host
            .rsplit_once(':')
            .map(|(name, port)| (name, port.parse::<u16>()))
            .unwrap_or((host, Ok(26379)));
        let port = port.map_err(|_| invalid("a sentinel port is not a number"))?;
        let name = name.trim_start_matches('[').trim_end_matches(']');
        sentinels.push(ConnectionAddr::Tcp(name.to_owned(), port));
    }
    if sentinels.is_empty() {
        return Err(invalid("redis+sentinel:// needs at least one host:port"));
    }
    let mut builder = SentinelClientBuilder::new(sentinels, &master, SentinelServerType::Master)
        .map_err(|e| invalid(e.category()))?
        .set_client_to_redis_protocol(ProtocolVersion::RESP3);
    if let Some(credentials) = credentials {
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        let (user, password) = (decode(user)?, decode(password)?);
        if !user.is_empty() {
            builder = builder.set_client_to_redis_username(user);
        }
        if !password.is_empty() {
            builder = builder.set_client_to_redis_password(password);
        }
    }
    for (key, value) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
    {
        match key {
            "db" => {
                let db = value
                    .parse::<i64>()
                    .map_err(|_| invalid("db must be a number"))?;
                builder = builder.set_client_to_redis_db(db);
            }
            _ => {
                return Err(invalid(
                    "unknown redis+sentinel:// parameter (only db is known)",
                ))
            }
        }
    }
    let client = builder.build().map_err(|e| invalid(e.category()))?;
    Ok(Target::Sentinel {
        client: Box::new(client),
        master,
    })
}

fn decode(part: &str) -> Result<String, BrokerError> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("a part is not valid percent-encoded UTF-8"))
}

/// Seeds and credentials of the cluster.
pub(super) struct ClusterTarget {
    nodes: Vec<String>,
    username: Option<String>,
    password: Option<String>,
}

impl ClusterTarget {
    /// Parses `redis+cluster://[user:password@]host:port[,host:port...][?partitions=N]`, and
    /// answers the partitions it names. Errors never repeat the URL.
    pub(super) fn parse(url: &str) -> Result<(ClusterTarget, Option<u32>), BrokerError> {
        if url.starts_with("rediss+cluster://") {
            // redis-rs speaks TLS to cluster nodes only with one of its TLS features, which
            // livepush does not enable (it would bring a second TLS stack); refused here
            // rather than failing at every connection attempt.
            return Err(invalid(
                "rediss+cluster:// (TLS to a Redis Cluster) is not supported yet; use redis+cluster:// on a private network or a TLS tunnel",
            ));
        }
        let rest = url
            .strip_prefix("redis+cluster://")
            .ok_or_else(|| invalid("expected redis+cluster://"))?;
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (mut username, mut password) = (None, None);
        if let Some(credentials) = credentials {
            let (user, pass) = credentials.split_once(':').unwrap_or((credentials, ""));
            let (user, pass) = (decode(user)?, decode(pass)?);
            username = (!user.is_empty()).then_some(user);
            password = (!pass.is_empty()).then_some(pass);
        }
        let mut nodes = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| invalid("each cluster node needs host:port"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| invalid("a cluster node port is not a number"))?;
            if name.is_empty() || name.contains('/') {
                return Err(invalid("a cluster node host is empty or malformed"));
            }
            nodes.push(format!("redis://{name}:{port}"));
        }
        if nodes.is_empty() {
            return Err(invalid("redis+cluster:// needs at least one host:port"));
        }
        let mut partitions = None;
        for (key, value) in query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
        {
            match key {
                "partitions" => {
                    partitions = Some(
                        value
                            .parse()
                            .map_err(|_| invalid("partitions must be a number"))?,
                    )
                }
                _ => {
                    return Err(invalid(
                        "unknown redis+cluster:// parameter (only partitions is known)",
                    ))
                }
            }
        }
        Ok((
            ClusterTarget {
                nodes,
                username,
                password,
            },
            partitions,
        ))
    }

    /// A cluster client; with `push`, RESP3 pushes (shard messages) go there.
    pub(super) fn client(
        &self,
        push: Option<mpsc::UnboundedSender<PushInfo>>,
    ) -> Result<ClusterClient, RedisError> {
        let mut builder = ClusterClientBuilder::new(self.nodes.clone())
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(RETRIES);
        if let Some(user) = &self.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.password(password);
        }
        if let Some(push) = push {
            builder = builder.push_sender(push);
        }
        builder.build()
    }

    pub(super) fn describe(&self) -> String {
        let hosts: Vec<&str> = self
            .nodes
            .iter()
            .map(|n| n.trim_start_matches("redis://"))
            .collect();
        format!("cluster {}", hosts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `url` was refused, and the error does not repeat its password (`topsecret`).
    fn refused_without_secret(url: &str, error: Option<BrokerError>) {
        let error = error.expect(url).to_string();
        assert!(!error.contains("topsecret"), "{error}");
    }

    #[test]
    fn parses_sentinel_urls_and_names_no_credentials_in_errors() {
        let target = Target::parse(
            "redis+sentinel://:s%40cret@127.0.0.1:26379,127.0.0.1:26380/mymaster?db=2",
        )
        .unwrap();
        assert_eq!(target.describe(), "sentinel master \"mymaster\"");
        assert!(!target.describe().contains("cret"));
        for bad in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel://127.0.0.1:x/m",
            "redis+sentinel:///m",
            "redis+sentinel://u:topsecret@h:1/m?color=red",
        ] {
            refused_without_secret(bad, Target::parse(bad).err());
        }
    }

    #[test]
    fn describes_a_server_by_its_address_only() {
        let target = Target::parse("redis://:topsecret@127.0.0.1:6380/").unwrap();
        assert_eq!(target.describe(), "127.0.0.1:6380");
        let error = Target::parse("redis://:topsecret@[bad")
            .err()
            .unwrap()
            .to_string();
        assert!(!error.contains("topsecret"), "{error}");
    }

    #[test]
    fn parses_cluster_urls_and_names_no_credentials_in_errors() {
        let (target, partitions) = ClusterTarget::parse(
            "redis+cluster://u:s%40cret@127.0.0.1:7000,127.0.0.1:7001/?partitions=8",
        )
        .unwrap();
        assert_eq!(partitions, Some(8));
        assert_eq!(
            target.nodes,
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(target.username.as_deref(), Some("u"));
        assert_eq!(target.password.as_deref(), Some("s@cret"));
        assert_eq!(target.describe(), "cluster 127.0.0.1:7000,127.0.0.1:7001");
        let (_, partitions) = ClusterTarget::parse("redis+cluster://h:1").unwrap();
        assert_eq!(partitions, None);
        for bad in [
            "redis+cluster://",
            "redis+cluster://:topsecret@h",
            "redis+cluster://:topsecret@h:x",
            "redis+cluster://:topsecret@h:1?color=red",
            "redis+cluster://:topsecret@h:1?partitions=x",
            "rediss+cluster://:topsecret@h:1",
        ] {
            refused_without_secret(bad, ClusterTarget::parse(bad).err());
        }
        let tls = ClusterTarget::parse("rediss+cluster://h:1")
            .err()
            .unwrap()
            .to_string();
        assert!(tls.contains("not supported"), "{tls}");
    }
}
