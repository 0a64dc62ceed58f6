//! Hub settings, from code or from the environment.

use std::time::Duration;

/// What happens to a subscriber whose queue is full because it reads slower than events arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close the stream. The client's `EventSource` reconnects with its `Last-Event-ID` and, with
    /// replay on, gets every event it missed: lossless. The default when replay is on.
    Disconnect,
    /// Drop the events that do not fit and, once the queue has room again, send the
    /// `livepush.lagged` event with `{"missed": N}`. The default when replay is off.
    Notify,
}

/// Settings of a [`Hub`](crate::Hub).
///
/// Build it with [`HubBuilder`](crate::HubBuilder) methods or read it with [`Config::from_env`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Interval of heartbeat comments on idle streams (`LIVEPUSH_HEARTBEAT_SECS`, default 15 s).
    pub heartbeat: Duration,
    /// Most concurrent SSE connections in this process (`LIVEPUSH_MAX_CONNECTIONS`, default 10,000).
    pub max_connections: usize,
    /// Events queued per connection before the slow-consumer policy applies
    /// (`LIVEPUSH_QUEUE_CAPACITY`, default 256).
    pub queue_capacity: usize,
    /// Largest event payload in bytes (`LIVEPUSH_MAX_EVENT_BYTES`, default 64 KiB).
    pub max_event_bytes: usize,
    /// The longest write-coalescing window (`LIVEPUSH_COALESCE_MS`, default 16 ms; zero turns
    /// coalescing off).
    ///
    /// A stream that writes its events one at a time keeps up and never waits: events that
    /// arrive less often than a connection can be written to (typical UI traffic, and 100
    /// events/s to 1,000 subscribers in BENCHMARKS.md) go out at once. A stream that finds
    /// several events queued when it writes has fallen behind; it then waits a window after each
    /// write and sends everything queued by then in one write. The window starts at 1 ms,
    /// doubles with each further write of several events up to this value, and closes after a
    /// write of a single event. A queue that fills to its flush mark is written at once, so
    /// holding back never costs an event. Each write to a socket costs several microseconds of
    /// kernel time whatever it carries, so under heavy traffic this is where the CPU goes
    /// (BENCHMARKS.md: at 1,000 subscribers and full load, 16 ms instead of a fixed 1 ms window
    /// cut server CPU per delivery by about half, and latency with it).
    pub coalesce: Duration,
    /// Events retained per topic for `Last-Event-ID` replay; 0 turns replay off
    /// (`LIVEPUSH_REPLAY`, default 0).
    pub replay: usize,
    /// How long retained events are kept (`LIVEPUSH_REPLAY_TTL_SECS`, default 3,600 s).
    pub replay_ttl: Duration,
    /// Most topics in one subscription (default 32).
    pub max_topics_per_subscription: usize,
    /// Most concurrent connections per cap key, shared by all instances (default: no cap).
    pub max_connections_per_key: Option<u32>,
    /// `Retry-After` seconds sent with 429 answers (default 5).
    pub retry_after_secs: u64,
    /// `retry:` hint sent to clients at connect, in milliseconds (default 2,000).
    pub client_retry_ms: u64,
    /// Longest a publish may wait for the broker before it fails open (default 2 s).
    pub publish_timeout: Duration,
    /// What to do with a consumer that falls behind; `None` picks by replay (see
    /// [`SlowConsumerPolicy`]).
    pub slow_consumer: Option<SlowConsumerPolicy>,
    /// Most publications kept in the retry buffer while the broker cannot take them
    /// (`LIVEPUSH_RETRY_BUFFER_EVENTS`, default 10,000; 0 turns the buffer off, and a failed
    /// publish is then only an error).
    pub retry_buffer_events: usize,
    /// Most payload bytes kept in the retry buffer (`LIVEPUSH_RETRY_BUFFER_BYTES`, default 16 MiB).
    pub retry_buffer_bytes: usize,
    /// Longest a publication waits in the retry buffer before it is given up and its topic's
    /// subscribers are told to reset (`LIVEPUSH_RETRY_BUFFER_SECS`, default 30 s).
    pub retry_buffer_age: Duration,
    /// Redis URL (`REDIS_URL`); `None` selects the in-memory broker.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (`LIVEPUSH_REDIS_PREFIX`, default `livepush:`).
    pub redis_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Duration::from_secs(15),
            max_connections: 10_000,
            queue_capacity: 256,
            max_event_bytes: 64 * 1024,
            coalesce: Duration::from_millis(16),
            replay: 0,
            replay_ttl: Duration::from_secs(3600),
            max_topics_per_subscription: 32,
            max_connections_per_key: None,
            retry_after_secs: 5,
            client_retry_ms: 2000,
            publish_timeout: Duration::from_secs(2),
            slow_consumer: None,
            retry_buffer_events: 10_000,
            retry_buffer_bytes: 16 << 20,
            retry_buffer_age: Duration::from_secs(30),
            redis_url: None,
            redis_prefix: "livepush:".to_owned(),
        }
    }
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable holds a value of the wrong form.
    #[error("environment variable {var}={value:?} is invalid: {expected}")]
    InvalidVar {
        /// The variable's name.
        var: &'static str,
        /// What it held.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `REDIS_URL` is set but this build of livepush has no Redis support.
    #[error("REDIS_URL is set but livepush was built without the `redis` feature")]
    RedisFeatureOff,
}

impl Config {
    /// Reads the `LIVEPUSH_*` variables and `REDIS_URL` over the defaults.
    ///
    /// | variable | meaning | default |
    /// | --- | --- | --- |
    /// | `REDIS_URL` | Redis broker URL; unset: in-memory broker | unset |
    /// | `LIVEPUSH_HEARTBEAT_SECS` | heartbeat interval, 1–3600 | 15 |
    /// | `LIVEPUSH_MAX_CONNECTIONS` | connections per process, ≥ 1 | 10000 |
    /// | `LIVEPUSH_QUEUE_CAPACITY` | events queued per connection, ≥ 1 | 256 |
    /// | `LIVEPUSH_MAX_EVENT_BYTES` | largest payload, ≥ 16 | 65536 |
    /// | `LIVEPUSH_COALESCE_MS` | longest write-coalescing window, 0–1000 ms; 0 = off | 16 |
    /// | `LIVEPUSH_REPLAY` | events retained per topic; 0 = off | 0 |
    /// | `LIVEPUSH_REPLAY_TTL_SECS` | retention time, ≥ 1 | 3600 |
    /// | `LIVEPUSH_MAX_CONNECTIONS_PER_KEY` | per-key cap across instances | unset |
    /// | `LIVEPUSH_RETRY_BUFFER_EVENTS` | publications kept while the broker is down, 0–16777216; 0 = off | 10000 |
    /// | `LIVEPUSH_RETRY_BUFFER_BYTES` | payload bytes kept while the broker is down, 1024–1073741824 | 16777216 |
    /// | `LIVEPUSH_RETRY_BUFFER_SECS` | longest wait in the retry buffer, 1–3600 s | 30 |
    /// | `LIVEPUSH_REDIS_PREFIX` | prefix of Redis keys and channels | `livepush:` |
    ///
    /// An empty variable counts as unset. A value of the wrong form is an error that names the
    /// variable, so a service can refuse to start with a clear message.
    ///
    /// ```
    /// let config = livepush::Config::from_env().expect("valid LIVEPUSH_* variables");
    /// assert!(config.queue_capacity >= 1);
    /// ```
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup` (for tests and other sources).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Config::default();
        if let Some(v) = get("LIVEPUSH_HEARTBEAT_SECS") {
            let secs = parse_in(
                &v,
                "LIVEPUSH_HEARTBEAT_SECS",
                1,
                3600,
                "seconds from 1 to 3600",
            )?;
            config.heartbeat = Duration::from_secs(secs);
        }
        if let Some(v) = get("LIVEPUSH_MAX_CONNECTIONS") {
            config.max_connections = parse_in(
                &v,
                "LIVEPUSH_MAX_CONNECTIONS",
                1,
                u32::MAX as u64,
                "a whole number ≥ 1",
            )? as usize;
        }
        if let Some(v) = get("LIVEPUSH_QUEUE_CAPACITY") {
            config.queue_capacity = parse_in(
                &v,
                "LIVEPUSH_QUEUE_CAPACITY",
                1,
                1 << 20,
                "a whole number from 1 to 1048576",
            )? as usize;
        }
        if let Some(v) = get("LIVEPUSH_COALESCE_MS") {
            let ms = parse_in(
                &v,
                "LIVEPUSH_COALESCE_MS",
                0,
                1000,
                "milliseconds from 0 (off) to 1000",
            )?;
            config.coalesce = Duration::from_millis(ms);
        }
        if let Some(v) = get("LIVEPUSH_MAX_EVENT_BYTES") {
            config.max_event_bytes = parse_in(
                &v,
                "LIVEPUSH_MAX_EVENT_BYTES",
                16,
                64 << 20,
                "bytes from 16 to 67108864",
            )? as usize;
        }
        if let Some(v) = get("LIVEPUSH_REPLAY") {
            config.replay = parse_in(
                &v,
                "LIVEPUSH_REPLAY",
                0,
                1 << 24,
                "events per topic, 0 (off) to 16777216",
            )? as usize;
        }
        if let Some(v) = get("LIVEPUSH_REPLAY_TTL_SECS") {
            let secs = parse_in(
                &v,
                "LIVEPUSH_REPLAY_TTL_SECS",
                1,
                30 * 86_400,
                "seconds from 1 to 2592000",
            )?;
            config.replay_ttl = Duration::from_secs(secs);
        }
        if let Some(v) = get("LIVEPUSH_MAX_CONNECTIONS_PER_KEY") {
            config.max_connections_per_key = Some(parse_in(
                &v,
                "LIVEPUSH_MAX_CONNECTIONS_PER_KEY",
                1,
                u32::MAX as u64,
                "a whole number ≥ 1",
            )? as u32);
        }
        if let Some(v) = get("LIVEPUSH_RETRY_BUFFER_EVENTS") {
            config.retry_buffer_events = parse_in(
                &v,
                "LIVEPUSH_RETRY_BUFFER_EVENTS",
                0,
                1 << 24,
                "publications from 0 (off) to 16777216",
            )? as usize;
        }
        if let Some(v) = get("LIVEPUSH_RETRY_BUFFER_BYTES") {
            config.retry_buffer_bytes = parse_in(
                &v,
                "LIVEPUSH_RETRY_BUFFER_BYTES",
                1024,
                1 << 30,
                "bytes from 1024 to 1073741824",
            )? as usize;
        }
        if let Some(v) = get("LIVEPUSH_RETRY_BUFFER_SECS") {
            let secs = parse_in(
                &v,
                "LIVEPUSH_RETRY_BUFFER_SECS",
                1,
                3600,
                "seconds from 1 to 3600",
            )?;
            config.retry_buffer_age = Duration::from_secs(secs);
        }
        if let Some(v) = get("LIVEPUSH_REDIS_PREFIX") {
            config.redis_prefix = v;
        }
        config.redis_url = get("REDIS_URL");
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against each other and their ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason| Err(ConfigError::Invalid { setting, reason });
        if self.heartbeat.is_zero() {
            return invalid("heartbeat", "must be longer than zero");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity", "must be at least 1");
        }
        if self.coalesce > Duration::from_secs(1) {
            return invalid("coalesce", "must be at most 1 s");
        }
        if self.max_event_bytes < 16 {
            return invalid("max_event_bytes", "must be at least 16");
        }
        if self.max_topics_per_subscription == 0 {
            return invalid("max_topics_per_subscription", "must be at least 1");
        }
        if self.max_connections_per_key == Some(0) {
            return invalid("max_connections_per_key", "must be at least 1");
        }
        if self.retry_buffer_events > 0 && self.retry_buffer_age.is_zero() {
            return invalid(
                "retry_buffer_age",
                "must be longer than zero when the retry buffer is on",
            );
        }
        if self.replay > 0 && self.replay_ttl.is_zero() {
            return invalid("replay_ttl", "must be longer than zero when replay is on");
        }
        if self
            .redis_prefix
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return invalid(
                "redis_prefix",
                "must not contain whitespace or control characters",
            );
        }
        Ok(())
    }

    /// The slow-consumer policy in force: the configured one, or the default for the replay setting.
    pub fn slow_consumer_policy(&self) -> SlowConsumerPolicy {
        self.slow_consumer.unwrap_or(if self.replay > 0 {
            SlowConsumerPolicy::Disconnect
        } else {
            SlowConsumerPolicy::Notify
        })
    }
}

pub(crate) fn parse_in(
    value: &str,
    var: &'static str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::InvalidVar {
            var,
            value: value.to_owned(),
            expected,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_every_variable() {
        let c = from(&[
            ("LIVEPUSH_HEARTBEAT_SECS", "3"),
            ("LIVEPUSH_MAX_CONNECTIONS", "50"),
            ("LIVEPUSH_QUEUE_CAPACITY", "8"),
            ("LIVEPUSH_MAX_EVENT_BYTES", "1024"),
            ("LIVEPUSH_COALESCE_MS", "0"),
            ("LIVEPUSH_REPLAY", "100"),
            ("LIVEPUSH_REPLAY_TTL_SECS", "60"),
            ("LIVEPUSH_MAX_CONNECTIONS_PER_KEY", "2"),
            ("LIVEPUSH_REDIS_PREFIX", "app1:"),
            ("LIVEPUSH_RETRY_BUFFER_EVENTS", "5"),
            ("LIVEPUSH_RETRY_BUFFER_BYTES", "4096"),
            ("LIVEPUSH_RETRY_BUFFER_SECS", "7"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ])
        .unwrap();
        assert_eq!(c.retry_buffer_events, 5);
        assert_eq!(c.retry_buffer_bytes, 4096);
        assert_eq!(c.retry_buffer_age, Duration::from_secs(7));
        assert_eq!(c.heartbeat, Duration::from_secs(3));
        assert_eq!(c.max_connections, 50);
        assert_eq!(c.queue_capacity, 8);
        assert_eq!(c.max_event_bytes, 1024);
        assert_eq!(c.coalesce, Duration::ZERO);
        assert_eq!(c.replay, 100);
        assert_eq!(c.replay_ttl, Duration::from_secs(60));
        assert_eq!(c.max_connections_per_key, Some(2));
        assert_eq!(c.redis_prefix, "app1:");
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.slow_consumer_policy(), SlowConsumerPolicy::Disconnect);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let c = from(&[("LIVEPUSH_REPLAY", ""), ("REDIS_URL", " ")]).unwrap();
        assert_eq!(c.replay, 0);
        assert!(c.redis_url.is_none());
        assert_eq!(c.slow_consumer_policy(), SlowConsumerPolicy::Notify);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("LIVEPUSH_HEARTBEAT_SECS", "0"),
            ("LIVEPUSH_HEARTBEAT_SECS", "fast"),
            ("LIVEPUSH_MAX_CONNECTIONS", "-1"),
            ("LIVEPUSH_QUEUE_CAPACITY", "0"),
            ("LIVEPUSH_MAX_EVENT_BYTES", "1"),
            ("LIVEPUSH_COALESCE_MS", "1001"),
            ("LIVEPUSH_COALESCE_MS", "0.5"),
            ("LIVEPUSH_REPLAY", "lots"),
            ("LIVEPUSH_REPLAY_TTL_SECS", "0"),
            ("LIVEPUSH_RETRY_BUFFER_EVENTS", "many"),
            ("LIVEPUSH_RETRY_BUFFER_BYTES", "10"),
            ("LIVEPUSH_RETRY_BUFFER_SECS", "0"),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
