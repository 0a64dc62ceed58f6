//! Where the broker connects: one Redis server, or the master that Redis Sentinel names.

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, ProtocolVersion, RedisError};

use crate::broker::BrokerError;

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

    /// What to name in logs: the address or the master name, never credentials.
    pub(super) fn describe(&self) -> String {
        match self {
            Target::Server(client) => client.get_connection_info().addr().to_string(),
            Target::Sentinel { master, .. } => format!("sentinel master {master:?}"),
        }
    }
}

fn invalid(what: &str) -> BrokerError {
    BrokerError::InvalidAddress(format!("invalid Redis URL: {what}"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let error = Target::parse(bad).err().expect(bad).to_string();
            assert!(!error.contains("topsecret"), "{error}");
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
}
