//! Code generation: the `SseEvent` impl, the `Serialize` check and the registry entry.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::DeriveInput;

use super::validate::Event;
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
    // Spanned on the type's name: a type that is not `Serialize` is reported there, with the
    // runtime's message about deriving it.
    let assert_serialize =
        quote_spanned!(ty.span()=> let _ = ::livepush::__private::assert_serialize::<#ty>;);
    quote! {
        const _: () = {
            #assert_serialize
            ::livepush::__private::inventory::submit! {
                ::livepush::__private::EventType {
                    type_name: #type_name,
                    module: ::std::module_path!(),
                    event: #name,
                    topic: #topic,
                    category: #category,
                    type_id: || ::std::any::TypeId::of::<#ty>(),
                    payload: |__livepush_schemas| {
                        #[allow(unused_imports)]
                        use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
                        let __livepush_probe = &::livepush::__private::Probe::<#ty>::new();
                        __livepush_probe.payload_schema(__livepush_schemas)
                    },
                    file: ::std::file!(),
                    line: ::std::line!(),
                }
            }
        };
        impl ::livepush::SseEvent for #ty {
            const EVENT: &'static str = #name;
            const TOPIC: &'static str = #topic;
            const CATEGORY: ::std::option::Option<&'static str> = #category;
            fn topic(&self) -> ::std::string::String {
                #topic_expr
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{attr, validate};
    use super::*;
    use crate::errors::Errors;
    use syn::parse_quote;

    #[test]
    fn fills_the_topic_from_fields() {
        let input: DeriveInput = parse_quote! {
            #[sse(event = "sync.completed", topic = "user:{user_id}:{org.id}", category = "data_sync")]
            struct SyncCompleted { user_id: u64, org: Org }
        };
        let mut errors = Errors::default();
        let args = attr::parse(&input, &mut errors);
        let event = validate::validate(&input, args, &mut errors).unwrap();
        let out = expand(&input, &event).to_string();
        assert!(
            out.contains("impl :: livepush :: SseEvent for SyncCompleted"),
            "{out}"
        );
        assert!(
            out.contains("const TOPIC : & 'static str = \"user:{user_id}:{org.id}\""),
            "{out}"
        );
        assert!(
            out.contains(":: std :: format ! (\"user:{}:{}\" , self . user_id , self . org . id)"),
            "{out}"
        );
        assert!(out.contains("Some (\"data_sync\")"), "{out}");
        assert!(
            out.contains("assert_serialize :: < SyncCompleted >"),
            "{out}"
        );
    }
}
