async fn set_topic(
    __livepush_publish: ::livepush::__private::PublishContext,
    Path(room): Path<String>,
) -> Json<Topic> {
    const __LIVEPUSH_PUBLISH_ROUTE_0: ::livepush::__private::PublishRoute = ::livepush::__private::retained_route(
        ::livepush::__private::publish_route(
            "set_topic",
            ::std::module_path!(),
            "room:{room}",
            "room_topic",
            ::std::option::Option::None,
            ::std::option::Option::None,
            |__livepush_schemas| {
                #[allow(unused_imports)]
                use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
                let __livepush_probe = &::livepush::__private::ReturnProbe::<
                    Json<Topic>,
                >::new();
                __livepush_probe.payload_schema(__livepush_schemas)
            },
            ::std::file!(),
            ::std::line!(),
        ),
        ::std::option::Option::Some(60u64),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_PUBLISH_ROUTE_0
    }
    let __livepush_arg_0 = ::std::string::ToString::to_string(&room);
    let __livepush_out: Json<Topic> = async move { Json(Topic::default()) }.await;
    let __livepush_pending = match ::livepush::Publishable::published(
        ::std::convert::identity(&__livepush_out),
    ) {
        ::std::option::Option::Some(__livepush_value) => {
            ::std::option::Option::Some((
                ::livepush::__private::encode(__livepush_value),
                ::std::format!("room:{}", __livepush_arg_0),
            ))
        }
        ::std::option::Option::None => ::std::option::Option::None,
    };
    if let ::std::option::Option::Some((__livepush_data, __livepush_topic_0)) = __livepush_pending {
        __livepush_publish
            .publish_retained(
                "room_topic",
                ::std::option::Option::None,
                __livepush_topic_0,
                &__livepush_data,
                ::std::option::Option::Some(60u64),
            )
            .await;
    }
    __livepush_out
}
