//! Every rule of `#[derive(SseEvent)]`, and the checked event mapping.

use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, LitStr};

use super::attr::SseArgs;
use super::ATTR;
use crate::errors::{both, Errors};
use crate::event_name::{self, NameKind};
use crate::retain::Retained;
use crate::template::{Placeholder, Template};

/// A checked `#[sse(...)]`.
pub(crate) struct Event {
    /// The SSE event name.
    pub(crate) name: String,
    pub(crate) category: Option<String>,
    /// The template as written, for `SseEvent::TOPIC` and the registry.
    pub(crate) topic: LitStr,
    pub(crate) template: Template,
    /// `Some` for state (`retain`).
    pub(crate) retain: Option<Retained>,
}

impl Event {
    /// The placeholders, each naming a field.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &Placeholder> {
        self.template.placeholders()
    }
}

/// Checks the type and its attribute, continuing the collection `parsed` that parsing started:
/// the event, or every error of the expansion.
pub(crate) fn validate(
    input: &DeriveInput,
    args: syn::Result<SseArgs>,
    parsed: Errors,
) -> syn::Result<Event> {
    let generics = check_generics(input);
    let fields = struct_fields(input);
    let event = args.and_then(check_args);
    // The placeholders can be checked only against a struct's fields and a parsed template.
    let placeholders = match (&fields, &event) {
        (Ok(fields), Ok(event)) => check_placeholders(input, event, fields),
        _ => Ok(()),
    };
    let ((((), _), event), ()) =
        parsed.finish_with(both(both(both(generics, fields), event), placeholders))?;
    Ok(event)
}

fn check_args(args: SseArgs) -> syn::Result<Event> {
    let name = args
        .event
        .required("event", &ATTR, "the SSE event name", &args.whole)
        .and_then(|lit| event_name::check_literal(&lit, NameKind::Event));
    let category = args.category.optional().and_then(|lit| {
        lit.map(|lit| event_name::check_literal(&lit, NameKind::Category))
            .transpose()
    });
    let topic = args
        .topic
        .required_topic(&ATTR, &args.whole)
        .and_then(|topic| {
            let template = Template::parse(&topic)?;
            template.check_topic_text(&topic)?;
            Ok((topic, template))
        });
    let retain = args.retain.validate();
    let (((name, category), (topic, template)), retain) =
        both(both(both(name, category), topic), retain)?;
    Ok(Event {
        name,
        category,
        topic,
        template,
        retain,
    })
}

fn check_generics(input: &DeriveInput) -> syn::Result<()> {
    if input.generics.params.is_empty() {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        &input.generics,
        "#[derive(SseEvent)] does not support generic types: an event type has one fixed name and topic",
    ))
}

/// The fields of a struct; an error for enums and unions.
fn struct_fields(input: &DeriveInput) -> syn::Result<&Fields> {
    match &input.data {
        Data::Struct(data) => Ok(&data.fields),
        Data::Enum(data) => Err(syn::Error::new_spanned(
            data.enum_token,
            "#[derive(SseEvent)] is not supported on enums: declare one struct per event, each with its own #[sse(...)]",
        )),
        Data::Union(data) => Err(syn::Error::new_spanned(
            data.union_token,
            "#[derive(SseEvent)] is not supported on unions: declare a struct with named fields",
        )),
    }
}

/// Each placeholder of the topic and of the retain key must name a field (its first name; rustc
/// checks nested ones).
fn check_placeholders(input: &DeriveInput, event: &Event, fields: &Fields) -> syn::Result<()> {
    let topic = check_template_fields(input, "topic", &event.topic, &event.template, fields);
    let key = match event.retain.as_ref().and_then(|r| r.key.as_ref()) {
        Some((lit, template)) => check_template_fields(input, "retain_key", lit, template, fields),
        None => Ok(()),
    };
    both(topic, key).map(drop)
}

fn check_template_fields(
    input: &DeriveInput,
    what: &str,
    topic: &LitStr,
    template: &Template,
    fields: &Fields,
) -> syn::Result<()> {
    let ty = &input.ident;
    let mut errors = Errors::default();
    let Fields::Named(named) = fields else {
        if let Some(placeholder) = template.placeholders().next() {
            errors.spanned(
                topic,
                format!("{what} placeholder `{placeholder}` names a field, but `{ty}` has no named fields"),
            );
        }
        return errors.finish();
    };
    let names: Vec<String> = named
        .named
        .iter()
        .filter_map(|f| f.ident.as_ref())
        .map(|i| i.unraw().to_string())
        .collect();
    for placeholder in template.placeholders() {
        if !names.iter().any(|name| name == placeholder.root()) {
            let list: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
            errors.spanned(
                topic,
                format!(
                    "{what} placeholder `{placeholder}` names no field of `{ty}`; its fields are {}",
                    list.join(", ")
                ),
            );
        }
    }
    errors.finish()
}

#[cfg(test)]
mod tests {
    use super::super::attr;
    use super::*;
    use syn::parse_quote;

    fn check(input: DeriveInput) -> Result<Event, Vec<String>> {
        let mut errors = Errors::default();
        let args = attr::parse(&input, &mut errors);
        validate(&input, args, errors).map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
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
