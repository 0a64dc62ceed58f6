//! The integration tests, one crate and one binary, one module per subject. Run one subject with
//! `cargo test --test it shutdown::`, one test by (part of) its name.
//!
//! Kept apart, each a process of its own, and each says why at its top: `browser.rs` (Chromium),
//! `compile_fail.rs` (trybuild), `tracing_spans.rs` (a global tracing subscriber), `memory.rs`
//! (measures this process's resident memory), `registry.rs` and `asyncapi.rs` (check what the
//! link-time registry of their program holds, which here would be every module's handlers), and
//! `redis_cluster/` (starts one Redis Cluster for all its scenarios, which change its topology,
//! and captures the logs of the whole process).
//! They reach the helpers with `#[path = "it/support/mod.rs"] mod support;`.

mod support;

// The example apps, included as their `main.rs` includes them: each names `crate::common`, so
// they sit at the crate root. Included once for the modules using them; their tests are
// written with `livepush::testing`, as an app's own tests would be.
#[path = "../../examples/common/mod.rs"]
mod common;

// crm_comments (`crm_comments.rs`, `testing.rs`, `cursor.rs`)
#[path = "../../examples/crm_comments/app.rs"]
mod app;

#[path = "../../examples/tickets/app.rs"]
mod tickets_app;

// `print_registry` is its `main.rs`'s, tested on the binary (`examples.rs`)
#[allow(dead_code)]
#[path = "../../examples/domain_events/app.rs"]
mod domain_events_app;

mod admin;
mod backpressure;
mod bad_input;
mod checkers;
mod cleanup;
mod conformance;
mod connect_info;
mod crm_comments;
mod cursor;
mod dashboard;
mod domain_events;
mod examples;
mod fast_path_differential;
mod framing;
mod http2;
mod limits;
mod metrics;
mod nats;
mod nats_partitions;
mod outbox;
mod outbox_instances;
mod presence;
mod publish;
mod redis_faults;
mod redis_instances;
mod replay;
mod serve_accepts;
mod serving;
mod shutdown;
mod slow_clients;
mod sse_loop;
mod state;
mod storm;
mod subscribe;
mod testing;
mod tickets;
