//! Redis broker (being written).
use crate::config::Config;
use super::BrokerError;
/// Placeholder.
pub struct RedisBroker;
impl RedisBroker {
    /// Placeholder.
    pub fn new(_url: &str, _config: &Config) -> Result<Self, BrokerError> {
        Err(BrokerError::Unavailable("redis broker not built yet".into()))
    }
}
