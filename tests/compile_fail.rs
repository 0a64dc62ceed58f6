//! Compile-time errors of the livepush macros: each misuse in `tests/ui/*.rs` must fail to build
//! with the reviewed message of its `.stderr`, pointing at the user's token; every supported
//! handler and event shape in `tests/ui/pass/*.rs` must build and run.
//!
//! After a deliberate change of a message: `TRYBUILD=overwrite cargo test --test compile_fail`,
//! then read every changed `.stderr`.

#[test]
fn macros_reject_misuse_on_the_offending_token_and_accept_supported_shapes() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
