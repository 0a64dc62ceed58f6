use livepush::publish_event;

#[publish_event(topic = "comments")]
struct Comment {
    text: String,
}

fn main() {
    let _ = Comment {
        text: String::new(),
    }
    .text;
}
