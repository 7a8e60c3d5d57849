//! JSON of the IR (`snnc show --format json`): the network as serde writes it, plus its
//! nodes (in topological order, each with its `id`) and edges.

use petgraph::visit::EdgeRef;
use serde_json::json;

use crate::ir::Network;

/// JSON: the network (serde) plus its nodes and edges in topological order.
pub fn to_json(net: &Network) -> serde_json::Value {
    let order = net.topo_order();
    let nodes: Vec<_> = order
        .iter()
        .map(|&i| {
            let mut v = serde_json::to_value(&net.graph[i]).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), json!(i.index()));
            }
            v
        })
        .collect();
    let edges: Vec<_> = net
        .graph
        .edge_references()
        .map(|e| json!({"from": e.source().index(), "to": e.target().index(), "port": e.weight().port, "kind": e.weight().kind}))
        .collect();
    let mut v = serde_json::to_value(net).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("nodes".into(), json!(nodes));
        o.insert("edges".into(), json!(edges));
        o.insert("input".into(), json!(net.input.index()));
        o.insert("output".into(), json!(net.output.index()));
    }
    v
}
