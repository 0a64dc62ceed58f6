pub async fn events(
    __livepush_subscribe: ::livepush::__private::SubscribeContext,
    user: AuthUser,
) -> ::livepush::__private::Response {
    const __LIVEPUSH_SUBSCRIBE_ROUTE: ::livepush::__private::SubscribeRoute = ::livepush::__private::subscribe_route(
        "events",
        ::std::module_path!(),
        ::livepush::__private::SubscribeMode::Query,
        ::std::file!(),
        ::std::line!(),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_SUBSCRIBE_ROUTE
    }
    __livepush_subscribe.from_query().await
}
