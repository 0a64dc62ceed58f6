use livepush::{subscribe_to_events, Topics};

#[subscribe_to_events]
async fn events() {
    let _topics = Topics::one("comments");
}

fn main() {}
