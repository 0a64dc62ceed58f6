use livepush::subscribe_to_events;

#[subscribe_to_events]
fn events() {}

fn main() {}
