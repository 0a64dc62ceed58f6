//! Every rule of `#[publish_event]`, and what the checked attributes mean for the expansion.

use std::collections::BTreeSet;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{LitStr, Type};

use super::attr::PublishArgs;
use super::bindings::argument_bindings;
use super::ATTR;
use crate::args::Given;
use crate::errors::{all, both, Errors};
use crate::event_name::{self, NameKind};
use crate::handler::{self, Handler};
use crate::retain::Retained;
use crate::template::{Placeholder, Template};

/// What the wrapper does, checked.
pub(crate) struct Plan {
    /// The handler's name, for the registry.
    pub(crate) handler: String,
    /// The declared return type.
    pub(crate) ret: Type,
    /// Placeholders naming arguments: read (as strings) before the body moves the arguments.
    pub(crate) captures: Vec<Placeholder>,
    /// One per attribute, top first.
    pub(crate) publications: Vec<Publication>,
}

/// One checked attribute.
pub(crate) struct Publication {
    pub(crate) span: Span,
    pub(crate) event: String,
    pub(crate) category: Option<String>,
    /// The template as written, for the registry.
    pub(crate) topic: LitStr,
    pub(crate) template: Template,
    /// What fills each placeholder of `template`, in order.
    pub(crate) holes: Vec<Hole>,
    pub(crate) data: Option<syn::Path>,
    /// `Some` for state (`retain`).
    pub(crate) retain: Option<Retained>,
}

/// What fills a placeholder.
pub(crate) enum Hole {
    /// The argument read before the body ran: an index into [`Plan::captures`].
    Argument(usize),
    /// A field of the published value.
    Field(Placeholder),
}

/// Checks the handler and its attributes, continuing the collection `parsed` that parsing
/// started: the plan, or every error of the expansion.
pub(crate) fn validate(
    func: &Handler,
    attrs: Vec<PublishArgs>,
    parsed: Errors,
) -> syn::Result<Plan> {
    let is_async = handler::check_async(&func.sig, &ATTR);
    let ret = handler::return_type(&func.sig).cloned().ok_or_else(|| {
        syn::Error::new_spanned(
            &func.sig,
            "a #[publish_event] handler must return the value to publish (e.g. `Json<T>` or `(StatusCode, Json<T>)`)",
        )
    });
    let default_event =
        default_event_name(func, attrs.iter().any(|a| matches!(a.event, Given::Absent)));
    let checked = all(attrs.into_iter().map(check_attribute));
    let ((((), ret), default_event), checked) =
        parsed.finish_with(both(both(both(is_async, ret), default_event), checked))?;

    let bindings = argument_bindings(&func.sig.inputs);
    let mut captures = Vec::new();
    let publications = checked
        .into_iter()
        .map(|attribute| {
            let holes = bind(&attribute.template, &bindings, &mut captures);
            Publication {
                span: attribute.span,
                event: attribute.event.unwrap_or_else(|| default_event.clone()),
                category: attribute.category,
                topic: attribute.topic,
                template: attribute.template,
                holes,
                data: attribute.data,
                retain: attribute.retain,
            }
        })
        .collect();
    Ok(Plan {
        handler: func.sig.ident.unraw().to_string(),
        ret,
        captures,
        publications,
    })
}

/// The handler's name, which is the event name of attributes without `event` (checked only
/// when one of them needs it).
fn default_event_name(func: &Handler, needed: bool) -> syn::Result<String> {
    let name = func.sig.ident.unraw().to_string();
    if needed {
        event_name::check(&name, NameKind::Event).map_err(|problem| {
            syn::Error::new_spanned(
                &func.sig.ident,
                format!(
                    "the event name defaults to the handler's name, `{name}`, and {problem}; set `event = \"...\"`"
                ),
            )
        })?;
    }
    Ok(name)
}

/// One attribute, checked; its placeholders are bound once every attribute is.
struct CheckedAttribute {
    span: Span,
    /// `None`: the handler's name.
    event: Option<String>,
    category: Option<String>,
    topic: LitStr,
    template: Template,
    data: Option<syn::Path>,
    retain: Option<Retained>,
}

fn check_attribute(args: PublishArgs) -> syn::Result<CheckedAttribute> {
    let event = args.event.optional().and_then(|lit| {
        lit.map(|lit| event_name::check_literal(&lit, NameKind::Event))
            .transpose()
    });
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
    let data = args.data.optional();
    let retain = args.retain.validate();
    let ((((event, category), (topic, template)), data), retain) =
        both(both(both(both(event, category), topic), data), retain)?;
    Ok(CheckedAttribute {
        span: args.span,
        event,
        category,
        topic,
        template,
        data,
        retain,
    })
}

/// Binds each placeholder to an argument when one has its name, else to a field of the value.
/// Argument placeholders shared by several attributes are read once.
fn bind(
    template: &Template,
    bindings: &BTreeSet<String>,
    captures: &mut Vec<Placeholder>,
) -> Vec<Hole> {
    template
        .placeholders()
        .map(|placeholder| {
            if !bindings.contains(placeholder.root()) {
                return Hole::Field(placeholder.clone());
            }
            let index = captures
                .iter()
                .position(|c| c == placeholder)
                .unwrap_or_else(|| {
                    captures.push(placeholder.clone());
                    captures.len() - 1
                });
            Hole::Argument(index)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::attr::parse_all;
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn plan(args: proc_macro2::TokenStream, func: Handler) -> Result<Plan, Vec<String>> {
        let mut func = func;
        let mut errors = Errors::default();
        let stacked = handler::take_attrs(&mut func.attrs, &ATTR);
        let attrs = parse_all(args, &stacked, &mut errors);
        validate(&func, attrs, errors).map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn placeholders_bind_arguments_first_then_fields() {
        let plan = plan(
            quote!(topic = "ticket:{id}:{title}"),
            parse_quote! {
                #[publish_event(topic = "ticket:{id}", event = "renamed")]
                async fn rename(Path(id): Path<u64>) -> Json<Ticket> {}
            },
        )
        .unwrap();
        assert_eq!(
            plan.captures.len(),
            1,
            "`id` is read once for both attributes"
        );
        let holes = &plan.publications[0].holes;
        assert!(matches!(holes[0], Hole::Argument(0)));
        assert!(matches!(&holes[1], Hole::Field(p) if p.root() == "title"));
        assert!(matches!(plan.publications[1].holes[0], Hole::Argument(0)));
        assert_eq!(plan.publications[0].event, "rename");
        assert_eq!(plan.publications[1].event, "renamed");
    }

    #[test]
    fn a_handler_name_that_is_not_an_event_name_needs_an_explicit_event() {
        let func: Handler = parse_quote!(
            async fn créer() -> Json<u8> {}
        );
        let errors = plan(quote!(topic = "a"), func.clone()).err().unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("the event name defaults to the handler's name, `créer`"));
        assert!(errors[0].ends_with("set `event = \"...\"`"));
        assert!(plan(quote!(topic = "a", event = "created"), func).is_ok());
    }

    #[test]
    fn raw_handler_names_are_published_unraw() {
        let plan = plan(
            quote!(topic = "a"),
            parse_quote!(
                async fn r#move() -> Json<u8> {}
            ),
        )
        .unwrap();
        assert_eq!(plan.handler, "move");
        assert_eq!(plan.publications[0].event, "move");
    }

    #[test]
    fn refuses_topics_that_are_not_valid_topic_text() {
        let errors = plan(
            quote!(topic = "user {id}"),
            parse_quote!(
                async fn h() -> Json<u8> {}
            ),
        )
        .err()
        .unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("whitespace ' '"), "{errors:?}");
    }

    #[test]
    fn requires_a_topic_and_a_return_type() {
        let errors = plan(
            quote!(),
            parse_quote!(
                async fn h() {}
            ),
        )
        .err()
        .unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("a #[publish_event] handler must return the value to publish")
        );
        assert!(errors[1].starts_with("missing `topic`"));
    }
}
