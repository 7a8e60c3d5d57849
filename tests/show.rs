//! `snnc show`: golden text and DOT output for small networks, JSON structure, `--after`.

use snnc::export::{dot::to_dot, json::to_json, text::to_text};

const VGG3X2: &str = "network VGG3x2 {
    input 3x32x32
    timesteps 25
    Conv1(3,64,3x3/1) LIF
    Conv2(64,64,3x3/1) LIF
    Pool(2x2/2)
    Conv3(64,64,3x3/1) x2 LIF
    Pool(2x2/2)
    FC1(4096,512) LIF
    FC2(512,10)
    stochmax
}";

const HYBRID_SKIP: &str = "network Hybrid {
    input 1x8x8
    encode direct
    Conv1(1,4,3x3/1)-ReLU
    Conv2(4,4,3x3/1)-IF(threshold=0.5)
    Pool(2x2/2)
    FC1(128,10)
    skip Conv1 -> FC1 concat
}";

fn first(src: &str) -> snnc::ir::Network {
    snnc::compile(src).unwrap().networks.remove(0)
}

#[test]
fn golden_text() {
    insta::assert_snapshot!("vgg3x2_text", to_text(&first(VGG3X2)));
    insta::assert_snapshot!("hybrid_skip_text", to_text(&first(HYBRID_SKIP)));
}

#[test]
fn golden_dot() {
    let dot = to_dot(&first(HYBRID_SKIP));
    assert!(dot.starts_with("digraph \"Hybrid\" {"));
    assert!(dot.contains("style=dashed"));
    assert!(dot.contains("classifier [label=\"softmax\\nclassifier\""));
    assert!(dot.contains("subgraph cluster_legend"));
    insta::assert_snapshot!("hybrid_skip_dot", dot);
}

/// Issue 13 item 8: the DOT graph shows which applications share weights (a dotted line
/// from `Conv3@1` to `Conv3@2`), the classifier, and a legend.
#[test]
fn dot_shows_shared_weights_classifier_and_legend() {
    let n = first(VGG3X2);
    let dot = to_dot(&n);
    let id = |name: &str, step: u32| {
        n.graph
            .node_indices()
            .find(|&i| n.graph[i].name == name && n.graph[i].step == step)
            .unwrap()
            .index()
    };
    let shared = format!(
        "n{} -> n{} [style=dotted, dir=none, constraint=false, color=gray40, label=\"same weights Conv3\"",
        id("Conv3", 1),
        id("Conv3", 2)
    );
    assert!(dot.contains(&shared), "{dot}");
    // Exactly one such line: one weight set is applied twice.
    assert_eq!(dot.matches("same weights").count(), 1, "{dot}");
    assert!(dot.contains(&format!("n{} -> classifier;", n.output.index())));
    assert!(dot.contains("label=\"stochmax\\nclassifier\""));
    assert!(dot.contains("legend_snn"));
}

#[test]
fn json_lists_nodes_in_topological_order() {
    let n = first(VGG3X2);
    let v = to_json(&n);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), n.graph.node_count());
    assert_eq!(nodes[0]["op"]["op"], "input");
    assert_eq!(nodes.last().unwrap()["name"], "FC2");
    assert_eq!(v["weights"].as_array().unwrap().len(), 5);
    assert_eq!(v["thresholds"].as_array().unwrap().len(), 5);
    assert_eq!(v["settings"]["classifier"], "stochmax");
}

#[test]
fn cli_show_after_pass_and_network_filter() {
    let exe = env!("CARGO_BIN_EXE_snnc");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("n.snn");
    std::fs::write(&f, format!("{VGG3X2}\n{HYBRID_SKIP}")).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(exe)
            .arg("show")
            .arg(&f)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run(&["--network", "VGG3x2", "--after", "resolve"]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("repeats:") && text.contains("Conv3 ..= Conv3 x2"),
        "{text}"
    );
    assert!(!text.contains("network Hybrid"));
    let (code, text) = run(&["--after", "unroll"]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("Conv3@2") && !text.contains("slot0"),
        "{text}"
    );
    let (code, text) = run(&["--format", "json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (code, text) = run(&["--format", "dot", "--network", "Hybrid"]);
    assert_eq!(code, Some(0));
    assert!(text.starts_with("digraph"));
    assert_eq!(run(&["--after", "nope"]).0, Some(2));
    assert_eq!(run(&["--network", "Missing"]).0, Some(1));
}

#[test]
fn text_columns_are_as_wide_as_their_content() {
    let n = first(
        "network N {
            input 3x8x8
            Conv1(3,4,3x3/1) LIF(leak=0.875, threshold=1.25, reset=zero)
            Conv2(4,4,3x3/1) IF
            Conv3(4,4,3x3/1) ReLU
            FC1(256,10)
        }",
    );
    let text = to_text(&n);
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "  nodes:")
        .skip(1)
        .take_while(|l| *l != "  weights:")
        .collect();
    assert_eq!(rows.len(), 8, "{text}");
    // The first row names the columns.
    assert!(
        rows[0].split_whitespace().eq([
            "node",
            "operation",
            "activation",
            "domain",
            "shape",
            "slot",
            "inputs"
        ]),
        "{text}"
    );
    // Every column starts at the same character offset on every row: the `<-` column, the
    // shape column (after the domain) and the activation column all line up.
    for needle in ["<- ", "  SNN  ", "  ANN  "] {
        let cols: std::collections::BTreeSet<usize> = rows
            .iter()
            .filter_map(|r| r.find(needle).map(|b| r[..b].chars().count()))
            .collect();
        assert_eq!(cols.len(), 1, "{needle} misaligned:\n{text}");
    }
    let long = "LIF(leak=0.875, threshold=1.25, reset=zero)";
    let row = rows.iter().find(|r| r.contains(long)).unwrap();
    // The widest activation is followed by exactly the two-space column gap.
    assert!(row.contains(&format!("{long}  SNN")), "{text}");
    assert!(rows
        .iter()
        .all(|r| r.starts_with("    ") && !r.ends_with(' ')));
}
