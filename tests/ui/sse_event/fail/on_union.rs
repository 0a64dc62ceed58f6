use livepush::SseEvent;

#[derive(SseEvent)]
#[sse(event = "bits", topic = "bits")]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
