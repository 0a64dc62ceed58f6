async fn mine(
    __livepush_subscribe: ::livepush::__private::SubscribeContext,
    Path(user): Path<u64>,
) -> ::livepush::__private::Response {
    const __LIVEPUSH_SUBSCRIBE_ROUTE: ::livepush::__private::SubscribeRoute = ::livepush::__private::subscribe_route(
        "mine",
        ::std::module_path!(),
        ::livepush::__private::SubscribeMode::Handler,
        ::std::file!(),
        ::std::line!(),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_SUBSCRIBE_ROUTE
    }
    let __livepush_sub: Result<Topics, StatusCode> = async move {
        Ok(Topics::one(format!("user:{user}")))
    }
        .await;
    __livepush_subscribe
        .with(
            ::livepush::IntoSubscription::into_subscription(
                ::std::convert::identity(__livepush_sub),
            ),
        )
        .await
}
