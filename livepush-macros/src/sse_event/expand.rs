//! Code generation: the `SseEvent` impl, the `Serialize` check and the registry entry.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::DeriveInput;

use super::validate::Event;
use crate::retain;
use crate::tokens::option_str;

/// The impl of `::livepush::SseEvent` for the type, and its registry entry.
pub(crate) fn expand(input: &DeriveInput, event: &Event) -> TokenStream {
    let ty = &input.ident;
    let type_name = ty.unraw().to_string();
    let name = &event.name;
    let topic = event.topic.value();
    let category = option_str(event.category.as_deref());
    let this = Ident::new("self", Span::call_site());
    let topic_expr = event.template.topic_expr(
        &event
            .fields()
            .map(|field| field.field_of(&this))
            .collect::<Vec<_>>(),
    );
    let mut entry = quote! {
        ::livepush::__private::event_type(
            #type_name,
            ::std::module_path!(),
            #name,
            #topic,
            #category,
            || ::std::any::TypeId::of::<#ty>(),
            |__livepush_schemas| {
                #[allow(unused_imports)]
                use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
                let __livepush_probe = &::livepush::__private::Probe::<#ty>::new();
                __livepush_probe.payload_schema(__livepush_schemas)
            },
            ::std::file!(),
            ::std::line!(),
        )
    };
    let retain_fn = event.retain.as_ref().map(|retain| {
        let ttl = retain::ttl_tokens(retain.ttl);
        entry = quote!(::livepush::__private::retained_event(#entry, #ttl));
        let key = match &retain.key {
            Some((_, template)) => template.topic_expr(
                &template
                    .placeholders()
                    .map(|field| field.field_of(&this))
                    .collect::<Vec<_>>(),
            ),
            None => quote!(::std::string::String::new()),
        };
        quote! {
            fn retain(&self) -> ::std::option::Option<::livepush::Retain> {
                ::std::option::Option::Some(::livepush::__private::retain(#key, #ttl))
            }
        }
    });
    // Spanned on the type's name: a type that is not `Serialize` is reported there, with the
    // runtime's message about deriving it.
    let assert_serialize =
        quote_spanned!(ty.span()=> let _ = ::livepush::__private::assert_serialize::<#ty>;);
    quote! {
        const _: () = {
            #assert_serialize
            const __LIVEPUSH_EVENT_TYPE: ::livepush::__private::EventType = #entry;
            ::livepush::__private::inventory::submit! { __LIVEPUSH_EVENT_TYPE }
        };
        impl ::livepush::SseEvent for #ty {
            const EVENT: &'static str = #name;
            const TOPIC: &'static str = #topic;
            const CATEGORY: ::std::option::Option<&'static str> = #category;
            fn topic(&self) -> ::std::string::String {
                #topic_expr
            }
            #retain_fn
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::assert_expansion;

    #[test]
    fn fills_the_topic_from_fields() {
        let out = super::super::expand(quote! {
            #[derive(Serialize, SseEvent)]
            #[sse(event = "sync.completed", topic = "user:{user_id}:{org.id}", category = "data_sync")]
            struct SyncCompleted { user_id: u64, org: Org }
        });
        assert_expansion("sse_event/fields", out.ok().unwrap());
    }

    #[test]
    fn a_retained_type_answers_its_retain_and_marks_its_entry() {
        let out = super::super::expand(quote! {
            #[derive(Serialize, SseEvent)]
            #[sse(event = "job_progress", topic = "jobs", retain, retain_key = "job:{id}", retain_ttl = 600)]
            struct JobProgress { id: u64, done: u8 }
        });
        assert_expansion("sse_event/retained", out.ok().unwrap());
    }
}
