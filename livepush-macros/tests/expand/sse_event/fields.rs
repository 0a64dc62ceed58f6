const _: () = {
    let _ = ::livepush::__private::assert_serialize::<SyncCompleted>;
    const __LIVEPUSH_EVENT_TYPE: ::livepush::__private::EventType = ::livepush::__private::event_type(
        "SyncCompleted",
        ::std::module_path!(),
        "sync.completed",
        "user:{user_id}:{org.id}",
        ::std::option::Option::Some("data_sync"),
        || ::std::any::TypeId::of::<SyncCompleted>(),
        |__livepush_schemas| {
            #[allow(unused_imports)]
            use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
            let __livepush_probe = &::livepush::__private::Probe::<SyncCompleted>::new();
            __livepush_probe.payload_schema(__livepush_schemas)
        },
        ::std::file!(),
        ::std::line!(),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_EVENT_TYPE
    }
};
impl ::livepush::SseEvent for SyncCompleted {
    const EVENT: &'static str = "sync.completed";
    const TOPIC: &'static str = "user:{user_id}:{org.id}";
    const CATEGORY: ::std::option::Option<&'static str> = ::std::option::Option::Some(
        "data_sync",
    );
    fn topic(&self) -> ::std::string::String {
        ::std::format!("user:{}:{}", self.user_id, self.org.id)
    }
}
