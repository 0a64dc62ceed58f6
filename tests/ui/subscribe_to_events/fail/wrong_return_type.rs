use livepush::{subscribe_to_events, Topics};

// `None` cannot refuse a subscription: `Result<Topics, StatusCode>` can.
#[subscribe_to_events]
async fn events() -> Option<Topics> {
    Some(Topics::one("comments"))
}

fn main() {}
