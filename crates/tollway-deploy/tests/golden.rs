//! tollway-deploy's renderer against the real Helm: every scenario of
//! tests/scenarios.txt renders to the same objects as Helm v4 rendered
//! into tests/golden/ (scripts/helm-golden.sh writes them), or fails with
//! the same message.
//!
//! A failure here means either the renderer differs from Helm on something
//! the chart uses, or the chart changed and the golden files were not
//! re-rendered: run crates/tollway-deploy/scripts/helm-golden.sh and look
//! at the diff.

// Helpers outside the #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value as Json;

fn scenarios() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios.txt"))
        .unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, sets) = l.split_once(':').unwrap();
            (
                name.trim().to_string(),
                sets.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

fn by_key(docs: Vec<Json>) -> BTreeMap<String, Json> {
    let mut m = BTreeMap::new();
    for d in docs {
        let key = format!(
            "{} {} {}/{}",
            d["apiVersion"].as_str().unwrap_or_default(),
            d["kind"].as_str().unwrap_or_default(),
            d["metadata"]["namespace"].as_str().unwrap_or_default(),
            d["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(m.insert(key.clone(), d).is_none(), "{key} twice");
    }
    m
}

/// The first path where two values differ, with both sides.
fn first_difference(a: &Json, b: &Json, path: &str) -> Option<String> {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Json::Null),
                    y.get(k).unwrap_or(&Json::Null),
                );
                if let Some(d) = first_difference(va, vb, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(va, vb, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: ours {a}, Helm's {b}")),
    }
}

const HOW: &str = "re-render the golden files with crates/tollway-deploy/scripts/helm-golden.sh";

#[test]
fn the_renderer_agrees_with_helm() {
    let all = scenarios();
    assert!(all.len() >= 8, "scenarios.txt lost its scenarios");
    for (name, sets) in all {
        let path = format!("{}/tests/golden/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let golden =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} ({HOW})"));
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let ours = try_render(&sets);
        if let Some(err) = golden.strip_prefix("# error\n") {
            // Helm: `execution error at (tollway/templates/x.yaml:1:4): MESSAGE`.
            let helm_msg = err.trim().split_once("): ").map_or(err.trim(), |(_, m)| m);
            let ours = ours
                .err()
                .unwrap_or_else(|| panic!("{name}: Helm refused it ({helm_msg}), we rendered it"));
            assert!(
                ours.to_string().ends_with(helm_msg),
                "{name}: Helm said {helm_msg:?}, we said {ours}"
            );
            continue;
        }
        let ours = ours.unwrap_or_else(|e| panic!("{name}: Helm rendered it, we failed: {e}"));
        let ours = by_key(
            ours.documents()
                .unwrap()
                .into_iter()
                .map(|d| d.value)
                .collect(),
        );
        let helm = by_key(yaml_docs(&golden));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            helm.keys().collect::<Vec<_>>(),
            "{name}: different objects ({HOW})"
        );
        for (key, h) in &helm {
            if let Some(d) = first_difference(&ours[key], h, "") {
                panic!("{name}: {key} differs from Helm's at {d} ({HOW})");
            }
        }
    }
}

#[test]
fn the_output_is_textually_helms_too() {
    // Not just the same objects: the same text, document by document (so
    // that `tollway-deploy template` output diffs cleanly against `helm
    // template`). Comments and blank lines are Helm's as well.
    for name in ["default", "seed", "everything"] {
        let path = format!("{}/tests/golden/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let golden = std::fs::read_to_string(&path).unwrap();
        let sets: Vec<String> = scenarios().into_iter().find(|(n, _)| n == name).unwrap().1;
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let rendered = render(&sets);
        for f in &rendered.files {
            if f.content.trim().is_empty() {
                continue;
            }
            let marker = format!("# Source: {}\n", f.name);
            let start = golden
                .find(&marker)
                .unwrap_or_else(|| panic!("{name}: {} not in Helm's output ({HOW})", f.name))
                + marker.len();
            let end = golden[start..]
                .find("\n---\n# Source: ")
                .map_or(golden.len(), |e| start + e);
            assert_eq!(
                &f.content,
                &golden[start..end],
                "{name}: {} ({HOW})",
                f.name
            );
        }
    }
}
