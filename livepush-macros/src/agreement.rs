//! The macros and the runtime apply the same rules: every topic, name and template of one corpus
//! gets the same verdict from the macros' compile-time checks and from the runtime's
//! constructors. Both call `livepush-core`; this fails when a wrapper on either side (an extra
//! check, a different order, a stale copy) makes them disagree.

use livepush::{EventName, Topic};
use proc_macro2::Span;
use syn::LitStr;

use crate::event_name::{self, NameKind};
use crate::template::{parse_str, Template};

fn long(len: usize) -> String {
    "a".repeat(len)
}

/// Valid and invalid topics: every allowed punctuation, each kind of refused character,
/// both sides of the length limit.
fn topics() -> Vec<String> {
    let mut topics: Vec<String> = [
        "comments",
        "ticket:42",
        "user:7/feed",
        "a_b-c.d:e/f@g#h=i+j~k*l",
        "0",
        "Z",
        "",
        " ",
        "a b",
        "a,b",
        "a\nb",
        "a\rb",
        "a\0b",
        "a\tb",
        "café",
        "a?b",
        "a&b",
        "a%20b",
        "a\"b",
        "a'b",
        "a;b",
        "{",
        "}",
        "a{b}c",
        "{{",
        "ü",
        "a\\b",
        "a|b",
        "a$b",
        "a!b",
        "a(b)",
        "a[b]",
        "a<b>",
        "a^b",
        "a`b",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    let max = livepush_core::topic::MAX_LEN;
    topics.extend([
        long(max - 1),
        long(max),
        long(max + 1),
        format!("{} x", long(max)),
    ]);
    topics
}

/// What the macros say of `topic` written as a template without placeholders (braces doubled,
/// so the template's literal text is `topic`).
fn macro_accepts_topic(topic: &str) -> bool {
    let escaped = topic.replace('{', "{{").replace('}', "}}");
    let lit = LitStr::new(&escaped, Span::call_site());
    Template::parse(&lit)
        .and_then(|t| t.check_topic_text(&lit))
        .is_ok()
}

#[test]
fn the_macros_accept_exactly_the_topics_the_runtime_accepts() {
    for topic in topics() {
        assert_eq!(
            macro_accepts_topic(&topic),
            Topic::new(&topic).is_ok(),
            "{topic:?}"
        );
    }
}

#[test]
fn the_macros_accept_exactly_the_event_names_the_runtime_accepts() {
    let max = livepush_core::name::MAX_LEN;
    let mut names: Vec<String> = [
        "created",
        "comment_created",
        "sync.completed",
        "a:b/c-d",
        "X",
        "0",
        "",
        "a b",
        "a\nb",
        "a\r",
        "\tx",
        "a,b",
        "a\0",
        "café",
        "{id}",
        "a@b",
        "a#b",
        "a=b",
        "a+b",
        "a~b",
        "a*b",
        "ok\ndata: forged",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    names.extend([long(max), long(max + 1), format!("{} x", long(max))]);
    for name in names {
        let runtime = EventName::new(name.clone()).is_ok();
        for kind in [NameKind::Event, NameKind::Category] {
            assert_eq!(event_name::check(&name, kind).is_ok(), runtime, "{name:?}");
        }
    }
}

/// The topic the macros' generated code builds from `template` with `fill` in every
/// placeholder (the literal text with `{}` replaced, as `format!` does).
fn rendered(template: &Template, fill: &str) -> String {
    template
        .format_string()
        .replace("{}", fill)
        .replace("{{", "{")
        .replace("}}", "}")
}

#[test]
fn the_runtime_matches_every_topic_the_macros_generate_and_no_other() {
    let templates = [
        "comments",
        "ticket:{id}",
        "user:{user.id}/feed",
        "{org}:{team}/{r#type}",
        "lit{{x}}:{id}",
        "{{{id}}}",
        "a}}b{{c",
    ];
    for text in templates {
        let template = parse_str(text, Span::call_site()).expect(text);
        for fill in ["7", "x-y", "a:b"] {
            let topic = rendered(&template, fill);
            assert!(
                livepush::__private::template_matches(text, &topic),
                "{text:?} should match {topic:?}"
            );
        }
        // An empty placeholder value, or text around the template, is not the template.
        if template.placeholders().next().is_some() {
            let empty = rendered(&template, "");
            assert!(
                !livepush::__private::template_matches(text, &empty),
                "{text:?} should not match {empty:?}"
            );
        }
        let starts_with_text = !text.starts_with('{') || text.starts_with("{{");
        let prefixed = format!("!{}", rendered(&template, "7"));
        assert!(
            !starts_with_text || !livepush::__private::template_matches(text, &prefixed),
            "{text:?} should not match {prefixed:?}"
        );
    }
}

#[test]
fn the_runtime_matches_nothing_with_a_template_the_macros_refuse() {
    for text in [
        "ticket:{id",
        "ticket:id}",
        "{}",
        "{a b}",
        "{id:>4}",
        "{1a}",
        "}{",
    ] {
        assert!(parse_str(text, Span::call_site()).is_err(), "{text:?}");
        for topic in [text, "ticket:7", "x"] {
            assert!(
                !livepush::__private::template_matches(text, topic),
                "{text:?} matched {topic:?}"
            );
        }
    }
}
