use livepush::subscribe_to_events;

#[subscribe_to_events(topic = "comments")]
async fn events() {}

fn main() {}
