//! `threshold-slots`: one [`ThresholdSlot`] per spiking node, i.e. per (weight set, unroll
//! step), in topological order; the slot's initial value is the neuron's threshold.

use crate::diagnostics::Diagnostics;
use crate::ir::{Activation, Network, SlotId, ThresholdSlot};

pub fn run(net: &mut Network, _diags: &mut Diagnostics) {
    net.thresholds.clear();
    for idx in net.topo_order() {
        let node = &mut net.graph[idx];
        if let Activation::Spiking(spec) = node.activation {
            let slot = SlotId(net.thresholds.len());
            node.slot = Some(slot);
            net.thresholds.push(ThresholdSlot {
                layer: node.name.clone(),
                step: node.step,
                node: idx,
                initial: spec.threshold,
            });
        } else {
            node.slot = None;
        }
    }
}
