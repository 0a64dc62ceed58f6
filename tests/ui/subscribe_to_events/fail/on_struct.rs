use livepush::subscribe_to_events;

#[subscribe_to_events]
struct Events;

fn main() {}
