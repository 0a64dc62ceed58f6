//! Topic templates: `"ticket:{id}"` is the literal `ticket:` then the placeholder `id`.
//!
//! `{{` and `}}` are literal braces; any other `{` opens a placeholder that the next `}` closes. A
//! placeholder is a name (`id`, or raw: `r#type`), optionally dotted (`user.id`), never a format
//! spec. The macros parse templates to generate the code that fills them; the runtime parses the
//! registered ones once into [`Matcher`]s to tell whether a topic is one of them.

use std::fmt;

/// A run of literal text (braces unescaped), or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A placeholder: its dotted names, without any `r#` prefix.
    Hole(Vec<String>),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A `{` at byte `at` that no `}` closes.
    Unclosed {
        /// Its byte offset.
        at: usize,
    },
    /// A `}` at byte `at` that no `{` opened.
    Unopened {
        /// Its byte offset.
        at: usize,
    },
    /// `{}` at byte `at`.
    Empty {
        /// Its byte offset.
        at: usize,
    },
    /// `{...}` whose content is not a (dotted) name.
    Invalid {
        /// What is between the braces.
        content: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unclosed { at } => write!(
                f,
                "unbalanced `{{` at byte {at} of the topic template: close the placeholder with `}}`, or write `{{{{` for a literal brace"
            ),
            TemplateError::Unopened { at } => write!(
                f,
                "unbalanced `}}` at byte {at} of the topic template: no `{{` opens it; write `}}}}` for a literal brace"
            ),
            TemplateError::Empty { at } => write!(
                f,
                "empty placeholder `{{}}` at byte {at} of the topic template: name a handler argument or a field, like `{{id}}`"
            ),
            TemplateError::Invalid { content } if content.contains(':') => write!(
                f,
                "placeholder `{{{content}}}` has a format spec, which topic templates do not support: write `{{name}}`"
            ),
            TemplateError::Invalid { content } => write!(
                f,
                "placeholder `{{{content}}}` is not a name: write an argument or field name, optionally dotted like `{{user.id}}`"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Parses `text` into its pieces, collecting every error.
pub fn parse(text: &str) -> Result<Vec<Piece>, Vec<TemplateError>> {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.next_if(|&(_, next)| next == '{').is_some() => literal.push('{'),
            '}' if chars.next_if(|&(_, next)| next == '}').is_some() => literal.push('}'),
            '}' => errors.push(TemplateError::Unopened { at }),
            '{' => {
                let start = at + 1;
                // A placeholder ends at the next `}`; another `{` first means this one is unclosed.
                let end = text[start..].find(['{', '}']).map(|i| start + i);
                match end {
                    Some(end) if text.as_bytes()[end] == b'}' => {
                        while chars.next_if(|&(i, _)| i <= end).is_some() {}
                        match placeholder(&text[start..end], at) {
                            Ok(names) => {
                                if !literal.is_empty() {
                                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                                }
                                pieces.push(Piece::Hole(names));
                            }
                            Err(error) => errors.push(error),
                        }
                    }
                    _ => errors.push(TemplateError::Unclosed { at }),
                }
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    if errors.is_empty() {
        Ok(pieces)
    } else {
        Err(errors)
    }
}

fn placeholder(content: &str, at: usize) -> Result<Vec<String>, TemplateError> {
    if content.is_empty() {
        return Err(TemplateError::Empty { at });
    }
    content
        .split('.')
        .map(name)
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| TemplateError::Invalid {
            content: content.to_owned(),
        })
}

/// An ASCII identifier, written plain or raw (`r#type`), as the name without `r#`.
fn name(segment: &str) -> Option<String> {
    let bare = segment.strip_prefix("r#").unwrap_or(segment);
    let mut chars = bare.chars();
    let first = chars.next()?;
    let word = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && bare != "_";
    // These keywords cannot be raw identifiers, so no argument or field can have them as names.
    let usable = !matches!(bare, "self" | "Self" | "super" | "crate");
    (word && usable).then(|| bare.to_owned())
}

/// The literal text of `pieces`, placeholders left out.
pub fn literal_text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .filter_map(|piece| match piece {
            Piece::Text(text) => Some(text.as_str()),
            Piece::Hole(_) => None,
        })
        .collect()
}

/// Whether `topic` is `template` with each placeholder filled by a non-empty run of bytes.
/// A template that does not parse matches nothing. Parses `template` on every call: to match
/// many topics, parse it once with [`Matcher::parse`].
pub fn matches(template: &str, topic: &str) -> bool {
    Matcher::parse(template).is_ok_and(|matcher| matcher.matches(topic))
}

/// A parsed template that tells in time linear in the topic's length whether a topic is the
/// template with each placeholder filled by a non-empty run of bytes.
///
/// ```
/// use livepush_core::template::Matcher;
///
/// let matcher = Matcher::parse("org:{org}:user:{id}").unwrap();
/// assert!(matcher.matches("org:a:b:user:7"));
/// assert!(!matcher.matches("org:a:team:7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The literal text before the first placeholder: a prefix of every match.
    head: Vec<u8>,
    /// Each run of adjacent placeholders with the literal text that follows it; the text is
    /// empty only in the last run. No runs: the topic is `head` exactly.
    runs: Vec<Run>,
}

/// `holes` adjacent placeholders (so at least `holes` bytes), then `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    holes: usize,
    text: Needle,
}

impl Matcher {
    /// Parses `template` ([`parse`]) into a matcher.
    pub fn parse(template: &str) -> Result<Self, Vec<TemplateError>> {
        parse(template).map(|pieces| Self::new(&pieces))
    }

    /// The matcher of a parsed template.
    pub fn new(pieces: &[Piece]) -> Self {
        let mut head = Vec::new();
        let mut runs: Vec<(usize, Vec<u8>)> = Vec::new();
        for piece in pieces {
            match (piece, runs.last_mut()) {
                (Piece::Text(text), None) => head.extend_from_slice(text.as_bytes()),
                (Piece::Text(text), Some((_, after))) => after.extend_from_slice(text.as_bytes()),
                // A placeholder right after another widens the run: both fill at least a byte.
                (Piece::Hole(_), Some((holes, after))) if after.is_empty() => *holes += 1,
                (Piece::Hole(_), _) => runs.push((1, Vec::new())),
            }
        }
        let runs = runs
            .into_iter()
            .map(|(holes, text)| Run {
                holes,
                text: Needle::new(text),
            })
            .collect();
        Matcher { head, runs }
    }

    /// Whether `topic` is this template with every placeholder filled by a non-empty run.
    pub fn matches(&self, topic: &str) -> bool {
        self.matches_counting(topic.as_bytes(), &mut 0)
    }

    /// [`Matcher::matches`], adding to `steps` one per byte comparison, so that tests can check
    /// the bound: at most `2 * topic.len() + template length` steps.
    ///
    /// Each literal text between placeholders is placed at its leftmost possible position after
    /// the previous one. Leftmost is never worse than any later placement (it leaves the most
    /// room for what follows), so the greedy choice is right and nothing is ever retried; the
    /// text after the last placeholder can only be the topic's suffix.
    fn matches_counting(&self, topic: &[u8], steps: &mut u64) -> bool {
        if !starts_with(topic, &self.head, steps) {
            return false;
        }
        let Some((last, middle)) = self.runs.split_last() else {
            return topic.len() == self.head.len();
        };
        let mut at = self.head.len();
        for run in middle {
            let Some(found) = run.text.find(topic, at + run.holes, steps) else {
                return false;
            };
            at = found + run.text.bytes.len();
        }
        let tail = &last.text.bytes;
        at + last.holes + tail.len() <= topic.len() && ends_with(topic, tail, steps)
    }
}

fn starts_with(haystack: &[u8], prefix: &[u8], steps: &mut u64) -> bool {
    haystack.len() >= prefix.len() && equal(&haystack[..prefix.len()], prefix, steps)
}

fn ends_with(haystack: &[u8], suffix: &[u8], steps: &mut u64) -> bool {
    haystack.len() >= suffix.len()
        && equal(&haystack[haystack.len() - suffix.len()..], suffix, steps)
}

fn equal(a: &[u8], b: &[u8], steps: &mut u64) -> bool {
    let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    *steps += same as u64 + 1;
    same == a.len()
}

/// Literal text with its Knuth-Morris-Pratt table, so finding it never re-reads the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Needle {
    bytes: Vec<u8>,
    /// `border[i]`: the length of the longest proper prefix of `bytes[..=i]` that is also its
    /// suffix; where to resume after a mismatch at `i + 1`.
    border: Vec<usize>,
}

impl Needle {
    fn new(bytes: Vec<u8>) -> Self {
        let mut border = vec![0; bytes.len()];
        let mut k = 0;
        for i in 1..bytes.len() {
            while k > 0 && bytes[i] != bytes[k] {
                k = border[k - 1];
            }
            if bytes[i] == bytes[k] {
                k += 1;
            }
            border[i] = k;
        }
        Needle { bytes, border }
    }

    /// The start of the first occurrence in `haystack` at or after `from`. At most two steps
    /// per byte of `haystack[from..]` read: each step either reads the next byte or shortens
    /// the partial match, which only reading bytes lengthens.
    fn find(&self, haystack: &[u8], from: usize, steps: &mut u64) -> Option<usize> {
        let needle = &self.bytes;
        if needle.is_empty() {
            return (from <= haystack.len()).then_some(from);
        }
        let mut k = 0;
        for (i, &byte) in haystack.iter().enumerate().skip(from) {
            while k > 0 && byte != needle[k] {
                *steps += 1;
                k = self.border[k - 1];
            }
            *steps += 1;
            if byte == needle[k] {
                k += 1;
                if k == needle.len() {
                    return Some(i + 1 - k);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hole(path: &str) -> Piece {
        Piece::Hole(path.split('.').map(String::from).collect())
    }

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }

    #[test]
    fn splits_literal_text_and_placeholders() {
        assert_eq!(parse("ticket:{id}").unwrap(), [text("ticket:"), hole("id")]);
        assert_eq!(
            parse("{org}/{user.id}:feed").unwrap(),
            [hole("org"), text("/"), hole("user.id"), text(":feed")]
        );
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        assert_eq!(parse("a{{b}}c{id}").unwrap(), [text("a{b}c"), hole("id")]);
        assert_eq!(
            parse("{{{id}}}").unwrap(),
            [text("{"), hole("id"), text("}")]
        );
    }

    #[test]
    fn refuses_unbalanced_braces() {
        assert_eq!(
            parse("ticket:{id").unwrap_err(),
            [TemplateError::Unclosed { at: 7 }]
        );
        assert_eq!(
            parse("ticket:id}").unwrap_err(),
            [TemplateError::Unopened { at: 9 }]
        );
        assert_eq!(parse("{").unwrap_err(), [TemplateError::Unclosed { at: 0 }]);
        assert_eq!(parse("}").unwrap_err(), [TemplateError::Unopened { at: 0 }]);
        // `{a{b}`: the first `{` is unclosed, the second opens `{b}`.
        assert_eq!(
            parse("{a{b}").unwrap_err(),
            [TemplateError::Unclosed { at: 0 }]
        );
    }

    #[test]
    fn reports_every_problem_of_a_template() {
        assert_eq!(
            parse("}{}{a b}{x").unwrap_err(),
            [
                TemplateError::Unopened { at: 0 },
                TemplateError::Empty { at: 1 },
                TemplateError::Invalid {
                    content: "a b".into()
                },
                TemplateError::Unclosed { at: 8 },
            ]
        );
    }

    #[test]
    fn a_placeholder_is_a_dotted_identifier() {
        for bad in [
            "1a", "a-b", "a..b", ".a", "a.", "id:>4", "_", "self", "a.super", "é", " id",
        ] {
            assert_eq!(
                parse(&format!("t:{{{bad}}}")).unwrap_err(),
                [TemplateError::Invalid {
                    content: bad.into()
                }],
                "{bad}"
            );
        }
        assert_eq!(parse("{_id}").unwrap(), [hole("_id")]);
        assert_eq!(parse("{r#type}").unwrap(), [hole("type")]);
    }

    #[test]
    fn messages_say_how_to_fix_the_template() {
        let message = TemplateError::Unclosed { at: 3 }.to_string();
        assert!(message.starts_with("unbalanced `{` at byte 3"), "{message}");
        assert!(message.contains("`{{`"), "{message}");
        let message = TemplateError::Invalid {
            content: "id:>4".into(),
        }
        .to_string();
        assert!(message.contains("format spec"), "{message}");
        assert!(TemplateError::Empty { at: 0 }
            .to_string()
            .contains("`{id}`"));
    }

    #[test]
    fn templates_match_topics() {
        assert!(matches("comments", "comments"));
        assert!(!matches("comments", "comment"));
        assert!(matches("ticket:{id}", "ticket:42"));
        assert!(!matches("ticket:{id}", "ticket:"));
        assert!(matches("org:{org}:user:{id}", "org:a:b:user:7"));
        assert!(!matches("org:{org}:user:{id}", "org:a:team:7"));
        assert!(matches("lit{{x}}", "lit{x}"));
        assert!(!matches("ticket:{id", "ticket:{id"));
        assert_eq!(literal_text(&parse("a{b}c{{").unwrap()), "ac{");
    }

    /// The matcher this module had before [`Matcher`]: tries every length of every placeholder.
    /// Obviously right and exponential in the number of placeholders, so it is the oracle, with
    /// a budget of steps: `None` once the budget is spent.
    fn backtracking(pieces: &[Piece], rest: &[u8], budget: &mut u64) -> Option<bool> {
        *budget = budget.checked_sub(1)?;
        match pieces.split_first() {
            None => Some(rest.is_empty()),
            Some((Piece::Text(text), tail)) => match rest.strip_prefix(text.as_bytes()) {
                Some(r) => backtracking(tail, r, budget),
                None => Some(false),
            },
            Some((Piece::Hole(_), tail)) => {
                for n in 1..=rest.len() {
                    if backtracking(tail, &rest[n..], budget)? {
                        return Some(true);
                    }
                }
                Some(false)
            }
        }
    }

    fn oracle(template: &str, topic: &str) -> bool {
        let mut unbounded = u64::MAX;
        parse(template).is_ok_and(|pieces| {
            backtracking(&pieces, topic.as_bytes(), &mut unbounded).expect("unbounded budget")
        })
    }

    /// Steps the matcher takes, with the bound its docs promise checked.
    fn steps(template: &str, topic: &str) -> (bool, u64) {
        let matcher = Matcher::parse(template).unwrap();
        let mut steps = 0;
        let matched = matcher.matches_counting(topic.as_bytes(), &mut steps);
        let bound = 2 * topic.len() as u64 + template.len() as u64 + 2;
        assert!(
            steps <= bound,
            "{steps} steps > {bound} for {template:?} on {topic:?}"
        );
        (matched, steps)
    }

    #[test]
    fn matching_takes_linear_steps_where_backtracking_explodes() {
        // Eight placeholders between `a`s and a topic of 256 `a`s that lacks the final `b`:
        // backtracking tries every way to cut the `a`s (on the order of 256^8 / 8!) before it fails.
        let template = "{p1}a{p2}a{p3}a{p4}a{p5}a{p6}a{p7}a{p8}b";
        let topic = "a".repeat(256);
        let (matched, taken) = steps(template, &topic);
        assert!(!matched);
        // The oracle spends a budget of a million steps without an answer on a topic of 40 of
        // those bytes: the bound above is what keeps the crafted topic cheap.
        let pieces = parse(template).unwrap();
        let mut budget = 1_000_000;
        assert_eq!(
            backtracking(&pieces, &topic.as_bytes()[..40], &mut budget),
            None
        );
        assert!(taken < 1_000, "{taken}");
        // The same shapes that do match.
        assert!(steps(template, &format!("{topic}b")).0);
        assert!(steps("{a}{b}{c}{d}{e}{f}{g}{h}", &topic).0);
        assert!(!steps("{a}{b}{c}{d}{e}{f}{g}{h}", "aaaaaaa").0);
        // Periodic texts make a naive search re-read the topic; the KMP table does not.
        let (matched, _) = steps("x{a}aaaaaaaaaaaaaaab{b}", &format!("x{}", "a".repeat(255)));
        assert!(!matched);
    }

    #[test]
    fn a_matcher_merges_adjacent_placeholders_and_texts() {
        let matcher = Matcher::new(&[
            text("a"),
            text("b"),
            hole("x"),
            text(""),
            hole("y"),
            text("c"),
        ]);
        assert_eq!(matcher, Matcher::parse("ab{x}{y}c").unwrap());
        assert!(matcher.matches("ab12c"));
        assert!(!matcher.matches("ab1c"));
        assert_eq!(Matcher::new(&[]), Matcher::parse("").unwrap());
        assert!(Matcher::new(&[]).matches(""));
        assert!(!Matcher::new(&[]).matches("a"));
    }

    mod agrees_with_backtracking {
        use super::*;
        use proptest::prelude::*;

        /// Literal text over a small alphabet (so generated topics often match), with braces
        /// and a two-byte character, which a placeholder may split (it fills bytes).
        fn literal() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop::sample::select(vec!["a", "b", ":", "{", "}", "é"]),
                0..4,
            )
            .prop_map(|parts| parts.concat())
        }

        /// A template as its pieces and its text, braces escaped.
        fn template() -> impl Strategy<Value = String> {
            proptest::collection::vec(prop_oneof![literal().prop_map(Some), Just(None)], 0..7)
                .prop_map(|pieces| {
                    let mut text = String::new();
                    for (i, piece) in pieces.iter().enumerate() {
                        match piece {
                            Some(literal) => {
                                text.push_str(&literal.replace('{', "{{").replace('}', "}}"))
                            }
                            None => text.push_str(&format!("{{p{i}}}")),
                        }
                    }
                    text
                })
        }

        /// The template with each placeholder filled by 1 to 3 literal characters, so that it
        /// matches unless `mutate` changes it.
        fn filled(template: &str, fills: &[String]) -> String {
            let mut fills = fills.iter().cycle();
            parse(template)
                .unwrap()
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => text.clone(),
                    Piece::Hole(_) => fills.next().cloned().unwrap_or_else(|| "a".into()),
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn on_filled_and_mutated_topics(
                template in template(),
                fills in proptest::collection::vec("[ab:é]{1,3}", 1..4),
                cut in any::<prop::sample::Index>(),
                insert in "[ab:é]{0,2}",
            ) {
                let topic = filled(&template, &fills);
                prop_assert!(oracle(&template, &topic), "{template:?} {topic:?}");
                prop_assert!(steps(&template, &topic).0, "{template:?} {topic:?}");
                // Cut a character out, or insert some: either may break the match.
                let chars: Vec<char> = topic.chars().collect();
                let mut mutated = chars.clone();
                if !mutated.is_empty() {
                    mutated.remove(cut.index(mutated.len()));
                }
                for topic in [mutated.iter().collect::<String>(), {
                    let at = cut.index(chars.len() + 1);
                    let mut inserted: String = chars[..at].iter().collect();
                    inserted.push_str(&insert);
                    inserted.extend(&chars[at..]);
                    inserted
                }] {
                    prop_assert_eq!(
                        steps(&template, &topic).0,
                        oracle(&template, &topic),
                        "{:?} on {:?}", template, topic
                    );
                }
            }

            #[test]
            fn on_arbitrary_topics(template in template(), topic in "[ab:{}é]{0,12}") {
                prop_assert_eq!(steps(&template, &topic).0, oracle(&template, &topic));
            }

            #[test]
            fn on_arbitrary_template_text(template in "[ab{}.:x]{0,10}", topic in "[ab:{}x]{0,8}") {
                // Templates that do not parse match nothing, in both.
                prop_assert_eq!(matches(&template, &topic), oracle(&template, &topic));
            }
        }
    }
}
