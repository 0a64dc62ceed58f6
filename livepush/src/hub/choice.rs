//! The broker a builder makes when code gives it none: Redis, NATS or in memory, with the
//! broker's own settings (URL, Redis prefix), from code or from the environment.
//!
//! These settings are the broker's, not the hub's, so they live here and not in [`Config`]:
//! one door per setting.

use std::sync::Arc;

use crate::broker::{Broker, MemoryBroker};
use crate::config::{Config, ConfigError};
use crate::error::BuildError;

use super::HubBuilder;

/// The broker's settings gathered by a [`HubBuilder`].
#[derive(Debug, Clone)]
pub(super) struct BrokerChoice {
    /// `REDIS_URL` / [`HubBuilder::redis`]; with no URL at all the broker is in memory.
    pub(super) redis_url: Option<String>,
    /// `LIVEPUSH_REDIS_PREFIX` / [`HubBuilder::redis_prefix`].
    pub(super) redis_prefix: String,
    /// `NATS_URL` / [`HubBuilder::nats`].
    pub(super) nats_url: Option<String>,
}

impl Default for BrokerChoice {
    fn default() -> Self {
        BrokerChoice {
            redis_url: None,
            redis_prefix: "livepush:".to_owned(),
            nats_url: None,
        }
    }
}

impl BrokerChoice {
    /// Reads `REDIS_URL`, `NATS_URL` and `LIVEPUSH_REDIS_PREFIX` through `lookup`; an empty
    /// variable counts as unset, as in [`Config::from_lookup`].
    pub(super) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<BrokerChoice, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut choice = BrokerChoice {
            redis_url: get("REDIS_URL"),
            nats_url: get("NATS_URL"),
            ..BrokerChoice::default()
        };
        if let Some(prefix) = get("LIVEPUSH_REDIS_PREFIX") {
            choice.redis_prefix = prefix;
        }
        choice.validate()?;
        Ok(choice)
    }

    /// Refuses two brokers at once and a prefix Redis commands could not carry, whether the
    /// settings come from code or the environment.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.redis_url.is_some() && self.nats_url.is_some() {
            return Err(ConfigError::TwoBrokers);
        }
        if self
            .redis_prefix
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(ConfigError::Invalid {
                setting: "redis_prefix",
                reason: "must not contain whitespace or control characters",
            });
        }
        Ok(())
    }

    /// The broker chosen, with the replay settings of `config`.
    pub(super) fn make(self, config: &Config) -> Result<Arc<dyn Broker>, BuildError> {
        let (replay, ttl) = (config.replay, config.replay_ttl);
        match (self.redis_url, self.nats_url) {
            (Some(url), _) => redis_broker(&url, &self.redis_prefix, config),
            (None, Some(url)) => nats_broker(&url, config),
            (None, None) => Ok(Arc::new(MemoryBroker::new(replay, ttl))),
        }
    }
}

/// The Redis broker of `url`: a cluster for `redis+cluster://` URLs, else one server.
#[cfg(feature = "redis")]
fn redis_broker(url: &str, prefix: &str, config: &Config) -> Result<Arc<dyn Broker>, BuildError> {
    use crate::broker::redis::{RedisBroker, RedisClusterBroker};
    let (replay, ttl) = (config.replay, config.replay_ttl);
    Ok(
        if url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://") {
            Arc::new(RedisClusterBroker::new(url, prefix, replay, ttl).map_err(BuildError::Broker)?)
        } else {
            Arc::new(RedisBroker::new(url, prefix, replay, ttl).map_err(BuildError::Broker)?)
        },
    )
}

/// Without the `redis` feature a Redis URL is an error, not a silent in-memory broker.
#[cfg(not(feature = "redis"))]
fn redis_broker(_: &str, _: &str, _: &Config) -> Result<Arc<dyn Broker>, BuildError> {
    Err(ConfigError::RedisFeatureOff.into())
}

/// The NATS broker of `url`.
#[cfg(feature = "nats")]
fn nats_broker(url: &str, config: &Config) -> Result<Arc<dyn Broker>, BuildError> {
    let broker = crate::broker::nats::NatsBroker::new(url, config.replay, config.replay_ttl)
        .map_err(BuildError::Broker)?;
    Ok(Arc::new(broker))
}

/// Without the `nats` feature a NATS URL is an error, not a silent in-memory broker.
#[cfg(not(feature = "nats"))]
fn nats_broker(_: &str, _: &Config) -> Result<Arc<dyn Broker>, BuildError> {
    Err(ConfigError::NatsFeatureOff.into())
}

impl HubBuilder {
    /// Starts from the environment: the hub's settings ([`Config::from_env`], the `LIVEPUSH_*`
    /// variables) and the broker's, below; the builder's methods then set what code says.
    /// [`Hub::from_env`](crate::Hub::from_env) builds it at once.
    ///
    /// | variable | builder method | meaning | default |
    /// | --- | --- | --- | --- |
    /// | `REDIS_URL` | [`redis`](HubBuilder::redis) | the Redis broker's URL (feature `redis`) | unset: in-memory broker |
    /// | `NATS_URL` | [`nats`](HubBuilder::nats) | the NATS JetStream broker's URL (feature `nats`); not with `REDIS_URL` | unset |
    /// | `LIVEPUSH_REDIS_PREFIX` | [`redis_prefix`](HubBuilder::redis_prefix) | prefix of every Redis key and channel; no whitespace or control characters | `livepush:` |
    ///
    /// An empty variable counts as unset. Both URLs set is [`ConfigError::TwoBrokers`]; a URL
    /// of a broker this build has no feature for fails when the hub is built.
    ///
    /// ```
    /// let hub = livepush::HubBuilder::from_env()
    ///     .expect("valid LIVEPUSH_*, REDIS_URL and NATS_URL variables")
    ///     .reject_unregistered_topics(true);
    /// # drop(hub);
    /// ```
    pub fn from_env() -> Result<HubBuilder, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`HubBuilder::from_env`], reading variables through `lookup`.
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<HubBuilder, ConfigError> {
        let mut builder = HubBuilder::from_config(Config::from_lookup(&lookup)?);
        builder.choice = BrokerChoice::from_lookup(lookup)?;
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<HubBuilder, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubBuilder::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_the_hub_and_the_broker_variables() {
        let b = from(&[
            ("LIVEPUSH_REPLAY", "100"),
            ("LIVEPUSH_REDIS_PREFIX", "app1:"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ])
        .unwrap();
        assert_eq!(b.config.replay(), 100);
        assert_eq!(b.choice.redis_prefix, "app1:");
        assert_eq!(
            b.choice.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        assert!(b.choice.nats_url.is_none());
    }

    #[test]
    fn nats_url_is_read_and_refused_beside_redis_url() {
        let b = from(&[("NATS_URL", "nats://127.0.0.1:4222")]).unwrap();
        assert_eq!(b.choice.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        let both = from(&[("NATS_URL", "nats://h:1"), ("REDIS_URL", "redis://h:2")])
            .err()
            .unwrap();
        assert_eq!(both, ConfigError::TwoBrokers);
        let message = both.to_string();
        assert!(
            message.contains("NATS_URL") && message.contains("REDIS_URL"),
            "{message}"
        );
    }

    #[test]
    fn empty_broker_variables_count_as_unset() {
        let b = from(&[
            ("REDIS_URL", " "),
            ("NATS_URL", ""),
            ("LIVEPUSH_REDIS_PREFIX", ""),
        ])
        .unwrap();
        assert!(b.choice.redis_url.is_none() && b.choice.nats_url.is_none());
        assert_eq!(b.choice.redis_prefix, "livepush:");
    }

    #[test]
    fn a_bad_prefix_is_refused_from_the_environment_and_from_code() {
        let env = from(&[("LIVEPUSH_REDIS_PREFIX", "my app:")]).err().unwrap();
        assert!(matches!(
            env,
            ConfigError::Invalid {
                setting: "redis_prefix",
                ..
            }
        ));
        let code = HubBuilder::from_config(Config::default())
            .redis_prefix("a\nb:")
            .build();
        assert!(matches!(
            code,
            Err(BuildError::Config(ConfigError::Invalid {
                setting: "redis_prefix",
                ..
            }))
        ));
    }

    #[test]
    fn two_brokers_from_code_are_refused_too() {
        let built = HubBuilder::from_config(Config::default())
            .redis("redis://h:1")
            .nats("nats://h:2")
            .build();
        assert!(matches!(
            built,
            Err(BuildError::Config(ConfigError::TwoBrokers))
        ));
    }

    #[test]
    fn a_hub_setting_from_the_environment_is_still_checked() {
        assert!(from(&[("LIVEPUSH_HEARTBEAT_SECS", "0")]).is_err());
    }
}
