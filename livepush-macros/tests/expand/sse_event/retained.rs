const _: () = {
    let _ = ::livepush::__private::assert_serialize::<JobProgress>;
    const __LIVEPUSH_EVENT_TYPE: ::livepush::__private::EventType = ::livepush::__private::retained_event(
        ::livepush::__private::event_type(
            "JobProgress",
            ::std::module_path!(),
            "job_progress",
            "jobs",
            ::std::option::Option::None,
            || ::std::any::TypeId::of::<JobProgress>(),
            |__livepush_schemas| {
                #[allow(unused_imports)]
                use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
                let __livepush_probe = &::livepush::__private::Probe::<
                    JobProgress,
                >::new();
                __livepush_probe.payload_schema(__livepush_schemas)
            },
            ::std::file!(),
            ::std::line!(),
        ),
        ::std::option::Option::Some(600u64),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_EVENT_TYPE
    }
};
impl ::livepush::SseEvent for JobProgress {
    const EVENT: &'static str = "job_progress";
    const TOPIC: &'static str = "jobs";
    const CATEGORY: ::std::option::Option<&'static str> = ::std::option::Option::None;
    fn topic(&self) -> ::std::string::String {
        ::std::string::String::from("jobs")
    }
    fn retain(&self) -> ::std::option::Option<::livepush::Retain> {
        ::std::option::Option::Some(
            ::livepush::__private::retain(
                ::std::format!("job:{}", self.id),
                ::std::option::Option::Some(600u64),
            ),
        )
    }
}
