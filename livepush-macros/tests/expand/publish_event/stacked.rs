pub async fn create(
    __livepush_publish: ::livepush::__private::PublishContext,
    Path(id): Path<u64>,
) -> (StatusCode, Json<Ticket>) {
    const __LIVEPUSH_PUBLISH_ROUTE_0: ::livepush::__private::PublishRoute = ::livepush::__private::publish_route(
        "create",
        ::std::module_path!(),
        "tickets",
        "ticket_created",
        ::std::option::Option::None,
        ::std::option::Option::None,
        |__livepush_schemas| {
            #[allow(unused_imports)]
            use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
            let __livepush_probe = &::livepush::__private::ReturnProbe::<
                (StatusCode, Json<Ticket>),
            >::new();
            __livepush_probe.payload_schema(__livepush_schemas)
        },
        ::std::file!(),
        ::std::line!(),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_PUBLISH_ROUTE_0
    }
    const __LIVEPUSH_PUBLISH_ROUTE_1: ::livepush::__private::PublishRoute = ::livepush::__private::publish_route(
        "create",
        ::std::module_path!(),
        "ticket:{id}",
        "created",
        ::std::option::Option::Some("tickets"),
        ::std::option::Option::None,
        |__livepush_schemas| {
            #[allow(unused_imports)]
            use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
            let __livepush_probe = &::livepush::__private::ReturnProbe::<
                (StatusCode, Json<Ticket>),
            >::new();
            __livepush_probe.payload_schema(__livepush_schemas)
        },
        ::std::file!(),
        ::std::line!(),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_PUBLISH_ROUTE_1
    }
    const __LIVEPUSH_PUBLISH_ROUTE_2: ::livepush::__private::PublishRoute = ::livepush::__private::publish_route(
        "create",
        ::std::module_path!(),
        "owner:{owner.id}",
        "create",
        ::std::option::Option::None,
        ::std::option::Option::Some("ids::only_id"),
        |__livepush_schemas| {
            #[allow(unused_imports)]
            use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
            let __livepush_probe = &::livepush::__private::ReturnProbe::<
                (StatusCode, Json<Ticket>),
            >::new();
            __livepush_probe.payload_schema(__livepush_schemas)
        },
        ::std::file!(),
        ::std::line!(),
    );
    ::livepush::__private::inventory::submit! {
        __LIVEPUSH_PUBLISH_ROUTE_2
    }
    let __livepush_arg_0 = ::std::string::ToString::to_string(&id);
    let __livepush_out: (StatusCode, Json<Ticket>) = async move {
        (StatusCode::OK, Json(Ticket::new(id)))
    }
        .await;
    let __livepush_pending = match ::livepush::Publishable::published(
        ::std::convert::identity(&__livepush_out),
    ) {
        ::std::option::Option::Some(__livepush_value) => {
            ::std::option::Option::Some((
                ::livepush::__private::encode(__livepush_value),
                ::std::string::String::from("tickets"),
                ::std::format!("ticket:{}", __livepush_arg_0),
                ::std::format!("owner:{}", __livepush_value.owner.id),
                ::livepush::__private::encode(&ids::only_id(__livepush_value)),
            ))
        }
        ::std::option::Option::None => ::std::option::Option::None,
    };
    if let ::std::option::Option::Some(
        (
            __livepush_data,
            __livepush_topic_0,
            __livepush_topic_1,
            __livepush_topic_2,
            __livepush_data_2,
        ),
    ) = __livepush_pending {
        __livepush_publish
            .publish(
                "ticket_created",
                ::std::option::Option::None,
                __livepush_topic_0,
                &__livepush_data,
            )
            .await;
        __livepush_publish
            .publish(
                "created",
                ::std::option::Option::Some("tickets"),
                __livepush_topic_1,
                &__livepush_data,
            )
            .await;
        __livepush_publish
            .publish(
                "create",
                ::std::option::Option::None,
                __livepush_topic_2,
                &__livepush_data_2,
            )
            .await;
    }
    __livepush_out
}
