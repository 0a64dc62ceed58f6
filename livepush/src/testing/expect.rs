//! What `assert_published!` looks for, and the message it fails with.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::recorded::{listing, Recorded};

/// A description of a publication: the fields given must all match, the others may be anything.
/// Built by [`assert_published!`](crate::testing::assert_published), one method per `key = value`.
///
/// ```
/// use livepush::testing::Expected;
///
/// let expected = Expected::new().topic("comments").event("comment_created").data(&serde_json::json!({ "id": 1 }));
/// # drop(expected);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Expected {
    topic: Option<String>,
    event: Option<String>,
    category: Option<String>,
    data: Option<Value>,
}

/// Why no publication matched: the index of the closest one, if any is close (same topic or
/// event), for a diff of its data.
pub(super) struct Mismatch {
    closest: Option<usize>,
}

impl Expected {
    /// Matches every publication.
    pub fn new() -> Self {
        Self::default()
    }

    /// Published on `topic`.
    pub fn topic(mut self, topic: impl AsRef<str>) -> Self {
        self.topic = Some(topic.as_ref().to_owned());
        self
    }

    /// Published as event `event`.
    pub fn event(mut self, event: impl AsRef<str>) -> Self {
        self.event = Some(event.as_ref().to_owned());
        self
    }

    /// Published with category `category`.
    pub fn category(mut self, category: impl AsRef<str>) -> Self {
        self.category = Some(category.as_ref().to_owned());
        self
    }

    /// Published with data that is `data` as JSON: a typed value or a `serde_json::json!`,
    /// compared as JSON values (key order does not matter).
    ///
    /// # Panics
    /// When `data` does not serialize to JSON.
    #[track_caller]
    pub fn data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        match serde_json::to_value(data) {
            Ok(value) => self.data = Some(value),
            Err(error) => panic!("the expected data does not serialize to JSON: {error}"),
        }
        self
    }

    fn matches(&self, p: &Recorded) -> bool {
        self.agreeing(p) == self.given() && self.data.as_ref().is_none_or(|d| *d == p.value())
    }

    /// How many of the given topic, event and category `p` has.
    fn agreeing(&self, p: &Recorded) -> usize {
        [
            self.topic.as_deref().map(|t| t == p.topic.as_str()),
            self.event.as_deref().map(|e| e == p.event.as_str()),
            self.category
                .as_deref()
                .map(|c| Some(c) == p.category.as_deref()),
        ]
        .into_iter()
        .filter(|agrees| *agrees == Some(true))
        .count()
    }

    fn given(&self) -> usize {
        [&self.topic, &self.event, &self.category]
            .into_iter()
            .filter(|f| f.is_some())
            .count()
    }

    pub(super) fn find<'a>(&self, log: &'a [Recorded]) -> Result<&'a Recorded, Mismatch> {
        if let Some(found) = log.iter().find(|p| self.matches(p)) {
            return Ok(found);
        }
        // The last of the best: the most recent publication that agrees on the most of topic,
        // event and category, provided it agrees on one.
        let closest = log
            .iter()
            .enumerate()
            .map(|(i, p)| (self.agreeing(p), i))
            .filter(|(agreeing, _)| *agreeing > 0 || self.given() == 0)
            .max()
            .map(|(_, i)| i);
        Err(Mismatch { closest })
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(event) = &self.event {
            parts.push(format!("event `{event}`"));
        }
        if let Some(topic) = &self.topic {
            parts.push(format!("topic `{topic}`"));
        }
        if let Some(category) = &self.category {
            parts.push(format!("category `{category}`"));
        }
        if let Some(data) = &self.data {
            parts.push(format!("data {data}"));
        }
        if parts.is_empty() {
            return f.write_str("any publication");
        }
        f.write_str(&parts.join(", "))
    }
}

impl Mismatch {
    /// The panic message of a failed `assert_published!`.
    pub(super) fn report(&self, expected: &Expected, log: &[Recorded]) -> String {
        let mut out = format!(
            "no publication matched: expected {expected}\nrecorded ({}):\n{}",
            log.len(),
            listing(log)
        );
        if let (Some(i), Some(data)) = (self.closest, &expected.data) {
            let _ = write!(
                out,
                "\ndata of the closest, {}. (- expected, + published):\n{}",
                i + 1,
                diff(&pretty(data), &pretty(&log[i].value()))
            );
        }
        out
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A line diff of `expected` and `actual` (longest common subsequence), every line shown.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // common[i][j]: the length of the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "   {}", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if j == b.len() || (i < a.len() && common[i + 1][j] >= common[i][j + 1]) {
            let _ = writeln!(out, "  -{}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "  +{}", b[j]);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_changed_lines_and_keeps_the_rest() {
        let diff = diff(
            "{\n  \"a\": 1,\n  \"b\": 2\n}",
            "{\n  \"a\": 1,\n  \"b\": 3\n}",
        );
        assert_eq!(
            diff,
            "   {\n     \"a\": 1,\n  -  \"b\": 2\n  +  \"b\": 3\n   }\n"
        );
    }
}
