//! The Grafana dashboard (`dashboards/livepush.json`) reads the metrics the code registers: each
//! query names only metric families of the golden `/metrics` text of a fresh hub
//! (`livepush/src/testdata/metrics-fresh.txt`, which `metrics.rs`'s unit test keeps equal to what
//! the code renders), every family is on some panel, the layout is sound, and
//! `docs/observability.md` explains every panel. A metric renamed in the code fails the unit
//! test until the golden file follows, and then this one until the dashboard does.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Metric family → type, from the `# TYPE` lines of the golden text.
fn registered() -> BTreeMap<String, String> {
    read("livepush/src/testdata/metrics-fresh.txt")
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("`# TYPE name type`");
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// The sample names a family of `kind` renders.
fn samples(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total")],
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

/// Every `livepush_…` identifier in a PromQL expression.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("livepush_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/livepush.json")).expect("the dashboard is JSON")
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

#[test]
fn the_dashboard_queries_only_registered_metrics_and_shows_every_one() {
    let families = registered();
    assert!(families.len() > 20, "{families:?}");
    let sample_to_family: BTreeMap<String, &str> = families
        .iter()
        .flat_map(|(f, kind)| samples(f, kind).into_iter().map(move |s| (s, f.as_str())))
        .collect();
    let dashboard = dashboard();
    let mut shown = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("a title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("an expr");
            let names = names_in(expr);
            assert!(
                !names.is_empty(),
                "{title}: {expr} reads no livepush metric"
            );
            for name in names {
                let family = sample_to_family.get(&name).unwrap_or_else(|| {
                    panic!("{title}: {expr} reads {name}, which the code does not register")
                });
                shown.insert(*family);
                // the panel says what it reads (the guide and the tooltip)
                let description = panel["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains(family),
                    "{title}: its description names {family}"
                );
            }
        }
    }
    let missing: Vec<_> = families
        .keys()
        .filter(|f| !shown.contains(f.as_str()))
        .collect();
    assert!(missing.is_empty(), "on no panel: {missing:?}");
}

#[test]
fn the_dashboard_layout_is_sound_and_the_guide_explains_every_panel() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "livepush");
    let all = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<i64> = all.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "panel ids are unique");
    let mut cells = BTreeSet::new();
    for panel in all {
        let g = &panel["gridPos"];
        let [x, y, w, h] = [&g["x"], &g["y"], &g["w"], &g["h"]].map(|v| v.as_i64().unwrap());
        assert!(x >= 0 && w > 0 && x + w <= 24 && h > 0, "{panel}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panels overlap at {cx},{cy}: {}",
                    panel["title"]
                );
            }
        }
    }
    let guide = read("docs/observability.md");
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap();
        assert!(
            guide.contains(&format!("### {title}")),
            "docs/observability.md has a section `### {title}`"
        );
    }
}
