//! Every rule of `#[derive(SseEvent)]`, and the checked event mapping.

use std::collections::BTreeSet;

use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, LitStr};

use super::attr::SseArgs;
use crate::errors::Errors;
use crate::event_name::{self, NameKind};
use crate::template::{Placeholder, Template};

/// A checked `#[sse(...)]`.
pub(crate) struct Event {
    /// The SSE event name.
    pub(crate) name: String,
    pub(crate) category: Option<String>,
    /// The template as written, for `SseEvent::TOPIC` and the registry.
    pub(crate) topic: LitStr,
    pub(crate) template: Template,
}

impl Event {
    /// The placeholders, each naming a field.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &Placeholder> {
        self.template.placeholders()
    }
}

/// Checks the type and its attribute. Returns no event only when an error was pushed.
pub(crate) fn validate(
    input: &DeriveInput,
    args: Option<SseArgs>,
    errors: &mut Errors,
) -> Option<Event> {
    let fields = check_shape(input, errors);
    let args = args?;
    if let Some(event) = &args.event {
        event_name::check_literal(event, NameKind::Event, errors);
    }
    if let Some(category) = &args.category {
        event_name::check_literal(category, NameKind::Category, errors);
    }
    if !args.keys.contains("event") {
        errors.spanned(
            &args.whole,
            "missing `event` in #[sse(...)]: add `event = \"...\"`, the SSE event name",
        );
    }
    let Some(topic) = args.topic else {
        if args.keys.contains("topic") {
            return None; // reported as a wrong value
        }
        errors.spanned(&args.whole, "missing `topic` in #[sse(...)]: add `topic = \"...\"`, such as `topic = \"user:{user_id}\"`");
        return None;
    };
    let template = Template::parse_topic(&topic, errors)?;
    if let Some(fields) = &fields {
        check_placeholders(input, &template, fields, &topic, errors);
    }
    Some(Event {
        name: args.event?.value(),
        category: args.category.map(|c| c.value()),
        topic,
        template,
    })
}

/// The field names of a struct; errors for enums, unions and generic types.
/// `None` when the type is not a struct.
fn check_shape(input: &DeriveInput, errors: &mut Errors) -> Option<Fields> {
    if !input.generics.params.is_empty() {
        errors.spanned(
            &input.generics,
            "#[derive(SseEvent)] does not support generic types: an event type has one fixed name and topic",
        );
    }
    match &input.data {
        Data::Struct(data) => Some(data.fields.clone()),
        Data::Enum(data) => {
            errors.spanned(
                data.enum_token,
                "#[derive(SseEvent)] is not supported on enums: declare one struct per event, each with its own #[sse(...)]",
            );
            None
        }
        Data::Union(data) => {
            errors.spanned(
                data.union_token,
                "#[derive(SseEvent)] is not supported on unions: declare a struct with named fields",
            );
            None
        }
    }
}

/// Each placeholder must name a field (its first name; rustc checks nested ones).
fn check_placeholders(
    input: &DeriveInput,
    template: &Template,
    fields: &Fields,
    topic: &LitStr,
    errors: &mut Errors,
) {
    let ty = &input.ident;
    let Fields::Named(named) = fields else {
        if let Some(placeholder) = template.placeholders().next() {
            errors.spanned(
                topic,
                format!("topic placeholder `{placeholder}` names a field, but `{ty}` has no named fields"),
            );
        }
        return;
    };
    let names: BTreeSet<String> = named
        .named
        .iter()
        .filter_map(|f| f.ident.as_ref())
        .map(|i| i.unraw().to_string())
        .collect();
    for placeholder in template.placeholders() {
        if !names.contains(placeholder.root()) {
            let list: Vec<String> = named
                .named
                .iter()
                .filter_map(|f| f.ident.as_ref())
                .map(|i| format!("`{}`", i.unraw()))
                .collect();
            errors.spanned(
                topic,
                format!(
                    "topic placeholder `{placeholder}` names no field of `{ty}`; its fields are {}",
                    list.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::attr;
    use super::*;
    use syn::parse_quote;

    fn check(input: DeriveInput) -> Result<Event, Vec<String>> {
        let mut errors = Errors::default();
        let args = attr::parse(&input, &mut errors);
        let event = validate(&input, args, &mut errors);
        match errors.finish() {
            Ok(()) => Ok(event.unwrap()),
            Err(e) => Err(e.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn accepts_a_struct_whose_placeholders_name_fields() {
        let event = check(parse_quote! {
            #[sse(event = "sync.completed", topic = "user:{user_id}/{org.id}", category = "data_sync")]
            struct SyncCompleted { user_id: u64, org: Org }
        })
        .unwrap();
        assert_eq!(event.name, "sync.completed");
        assert_eq!(event.category.as_deref(), Some("data_sync"));
        assert_eq!(event.fields().count(), 2);
    }

    #[test]
    fn tuple_and_unit_structs_need_a_topic_without_placeholders() {
        assert!(check(parse_quote!(
            #[sse(event = "m", topic = "broadcast")]
            struct M;
        ))
        .is_ok());
        assert!(check(parse_quote!(
            #[sse(event = "m", topic = "broadcast")]
            struct M(u8);
        ))
        .is_ok());
        let errors = check(parse_quote!(
            #[sse(event = "m", topic = "t:{0}")]
            struct M(u8);
        ))
        .err()
        .unwrap();
        assert!(
            errors[0].contains("placeholder `{0}` is not a name"),
            "{errors:?}"
        );
        let errors = check(parse_quote!(
            #[sse(event = "m", topic = "t:{id}")]
            struct M(u8);
        ))
        .err()
        .unwrap();
        assert_eq!(
            errors,
            ["topic placeholder `{id}` names a field, but `M` has no named fields"]
        );
    }

    #[test]
    fn lists_the_fields_when_a_placeholder_names_none() {
        let errors = check(parse_quote! {
            #[sse(event = "e", topic = "user:{usr_id}")]
            struct E { user_id: u64, r#type: u8 }
        })
        .err()
        .unwrap();
        assert_eq!(
            errors,
            ["topic placeholder `{usr_id}` names no field of `E`; its fields are `user_id`, `type`"]
        );
    }

    #[test]
    fn refuses_enums_unions_and_generics_with_every_other_error() {
        let errors = check(parse_quote!(
            #[sse(event = "a b", topic = "t")]
            enum E<T> {
                A(T),
            }
        ))
        .err()
        .unwrap();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("does not support generic types"));
        assert!(errors[1].contains("not supported on enums"));
        assert!(errors[2].contains("event name contains whitespace"));
        let errors = check(parse_quote!(#[sse(event = "a", topic = "t")] union U { a: u8 }))
            .err()
            .unwrap();
        assert!(errors[0].contains("not supported on unions"));
    }

    #[test]
    fn requires_event_and_topic() {
        let errors = check(parse_quote!(
            #[sse(category = "c")]
            struct S;
        ))
        .err()
        .unwrap();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("missing `event`"));
        assert!(errors[1].starts_with("missing `topic`"));
    }
}
