//! Compile-time errors of the livepush macros, one directory per macro:
//! `tests/ui/<macro>/fail/*.rs` must each fail to build with the reviewed message of its
//! `.stderr`, one error per mistake, pointing at the user's token; every supported handler and
//! event shape in `tests/ui/<macro>/pass/*.rs` must build and run.
//!
//! After a deliberate change of a message: `TRYBUILD=overwrite cargo test --test compile_fail`,
//! then read every changed `.stderr`.

#[test]
fn macros_reject_misuse_on_the_offending_token_and_accept_supported_shapes() {
    let cases = trybuild::TestCases::new();
    for mac in ["publish_event", "subscribe_to_events", "sse_event"] {
        cases.compile_fail(format!("tests/ui/{mac}/fail/*.rs"));
        cases.pass(format!("tests/ui/{mac}/pass/*.rs"));
    }
}
