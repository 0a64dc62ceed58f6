//! The Redis engine, in two topologies: one server or a Sentinel-managed master
//! ([`RedisBroker`], `single/`) and a Redis Cluster ([`RedisClusterBroker`], [`cluster`]).
//!
//! Both run the same Lua scripts (`scripts.rs`) on the same payload (`payload.rs`), keep
//! connection caps the same way (`slots.rs`), share the state of a broker and its connection
//! task and the commands on it (`engine.rs`: a topology is a `Shard` that names its keys per
//! partition; one server is one partition), and catch up after a gap the same way
//! (`link.rs`). What differs is only how they connect and notice a gap: one server has one
//! pub/sub connection whose loss is a gap for every topic; a cluster has one connection per
//! node, followed by `redis-rs`, and a gap is per partition. Both refuse a server older than
//! Redis 7.0 at every connection (`version.rs`).

pub mod cluster;
mod engine;
mod lease;
mod link;
mod payload;
mod presence;
mod renewal;
mod scripts;
mod single;
mod slots;
mod target;
mod version;

pub use cluster::RedisClusterBroker;
pub(crate) use payload::decode;
pub use single::RedisBroker;
