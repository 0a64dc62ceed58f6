use livepush::publish_event;

#[publish_event(topic = "comments")]
trait Comments {
    fn create(&self);
}

fn main() {}
