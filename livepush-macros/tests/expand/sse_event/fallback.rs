::core::compile_error! {
    "#[derive(SseEvent)] does not support generic types: an event type has one fixed name and topic"
}
::core::compile_error! {
    "event name contains whitespace (' ' at byte 1): use 1 to 128 ASCII letters, digits and `_ . : / -`"
}
::core::compile_error! {
    "unknown key `topc` in #[sse]: did you mean `topic`? (expected `event`, `topic`, `category`, `retain`, `retain_ttl` or `retain_key`)"
}
#[allow(unused_qualifications)]
#[automatically_derived]
impl<T: Clone> ::livepush::SseEvent for Wrapper<T> {
    const EVENT: &'static str = "";
    const TOPIC: &'static str = "";
    const CATEGORY: ::std::option::Option<&'static str> = ::std::option::Option::None;
    fn topic(&self) -> ::std::string::String {
        ::std::unreachable!()
    }
}
