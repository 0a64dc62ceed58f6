async fn generic<S: Clone>(
    __livepush_publish: ::livepush::__private::PublishContext,
    State(_state): State<S>,
) -> Json<u8> {
    const __LIVEPUSH_PUBLISH_ROUTE_0: ::livepush::__private::PublishRoute = ::livepush::__private::publish_route(
        "generic",
        ::std::module_path!(),
        "generic",
        "generic",
        ::std::option::Option::None,
        ::std::option::Option::None,
        |_| ::std::option::Option::None,
        ::std::file!(),
        ::std::line!(),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_PUBLISH_ROUTE_0
    }
    let __livepush_out: Json<u8> = async move { Json(1) }.await;
    let __livepush_pending = match ::livepush::Publishable::published(
        ::std::convert::identity(&__livepush_out),
    ) {
        ::std::option::Option::Some(__livepush_value) => {
            ::std::option::Option::Some((
                ::livepush::__private::encode(__livepush_value),
                ::std::string::String::from("generic"),
            ))
        }
        ::std::option::Option::None => ::std::option::Option::None,
    };
    if let ::std::option::Option::Some((__livepush_data, __livepush_topic_0)) = __livepush_pending {
        __livepush_publish
            .publish(
                "generic",
                ::std::option::Option::None,
                __livepush_topic_0,
                &__livepush_data,
            )
            .await;
    }
    __livepush_out
}
