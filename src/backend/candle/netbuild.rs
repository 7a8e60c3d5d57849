//! A small builder of final-form IR networks by hand (chains of layers with optional skip
//! joins), for tests, examples and programs that build networks without source text.
//!
//! Invariants of what [`NetBuilder::build`] returns: those of `crate::ir` — shapes, domains
//! (a spiking layer is SNN, a ReLU layer ANN, anything else inherits its input's domain),
//! `Encode`/`Boundary` nodes on every domain change, one threshold slot per spiking
//! (weight set, step). Shapes are not validated beyond what the arithmetic needs: it is a
//! helper for well-formed networks, not a front end.

use petgraph::graph::NodeIndex;

use crate::ir::{
    Activation, BoundaryKind, Classifier, Domain, Edge, EdgeKind, Encoding, JoinMode, LayerKind,
    Network, Node, Op, PoolKind, Settings, Shape, SlotId, ThresholdSlot, WeightId, WeightSet,
};
use crate::syntax::span::Span;

/// Builds a [`Network`] layer by layer along the main path.
pub struct NetBuilder {
    net: Network,
    last: NodeIndex,
    pools: u32,
    drops: u32,
}

impl NetBuilder {
    /// A network with input `input` and `timesteps` T, default settings otherwise.
    pub fn new(name: &str, input: Shape, timesteps: u32) -> Self {
        let mut graph = petgraph::graph::DiGraph::new();
        let mut node = Node::new("Input", Op::Input, Activation::None, Span::default());
        node.out_shape = Some(input);
        node.domain = Some(Domain::Ann);
        let inp = graph.add_node(node);
        let settings = Settings {
            input: Some(input),
            timesteps: Some(timesteps),
            ..Settings::default()
        };
        NetBuilder {
            net: Network {
                name: name.into(),
                span: Span::default(),
                settings,
                weights: Vec::new(),
                graph,
                input: inp,
                output: inp,
                repeats: Vec::new(),
                thresholds: Vec::new(),
            },
            last: inp,
            pools: 0,
            drops: 0,
        }
    }

    pub fn settings(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.net.settings);
        self
    }

    pub fn classifier(self, c: Classifier) -> Self {
        self.settings(|s| s.classifier = c)
    }

    pub fn encoding(self, e: Encoding) -> Self {
        self.settings(|s| s.encode = e)
    }

    /// The node the next layer will read (to start a skip connection from).
    pub fn mark(&self) -> NodeIndex {
        self.last
    }

    /// The default spiking activation of this network.
    pub fn lif(&self) -> Activation {
        Activation::Spiking(self.net.settings.neuron)
    }

    fn shape_of(&self, n: NodeIndex) -> Shape {
        self.net.graph[n].out_shape.unwrap_or(Shape::new(1, 1, 1))
    }

    fn domain_of(&self, n: NodeIndex) -> Domain {
        self.net.graph[n].domain.unwrap_or(Domain::Ann)
    }

    /// Whether `n`'s value is the input image, unchanged by any weighted layer.
    fn is_raw(&self, mut n: NodeIndex) -> bool {
        loop {
            match self.net.graph[n].op {
                Op::Input => return true,
                Op::Pool { .. } | Op::Dropout { .. } => match self.net.inputs_of(n).first() {
                    Some(&i) => n = i,
                    None => return false,
                },
                _ => return false,
            }
        }
    }

    /// Moves `from` into domain `want`, inserting an Encode or Boundary node when needed.
    fn cross_to(&mut self, from: NodeIndex, want: Domain) -> NodeIndex {
        if self.domain_of(from) == want {
            return from;
        }
        let op = match (want, self.is_raw(from)) {
            (Domain::Snn, true) => Op::Encode {
                encoding: self.net.settings.encode,
            },
            (Domain::Snn, false) => Op::Boundary {
                kind: BoundaryKind::AnnToSnn,
            },
            (Domain::Ann, _) => Op::Boundary {
                kind: BoundaryKind::SnnToAnn,
            },
        };
        let name = match op {
            Op::Encode { .. } => "Encode".to_string(),
            _ => format!("Boundary{}", self.net.graph.node_count()),
        };
        let shape = self.shape_of(from);
        self.push(name, op, Activation::None, shape, want, &[from], 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: String,
        op: Op,
        act: Activation,
        shape: Shape,
        domain: Domain,
        inputs: &[NodeIndex],
        step: u32,
    ) -> NodeIndex {
        let mut node = Node::new(name.clone(), op, act, Span::default());
        node.out_shape = Some(shape);
        node.domain = Some(domain);
        node.step = step;
        if let Activation::Spiking(_) = act {
            node.slot = Some(SlotId(self.net.thresholds.len()));
        }
        let idx = self.net.graph.add_node(node);
        if let Activation::Spiking(spec) = act {
            self.net.thresholds.push(ThresholdSlot {
                layer: name,
                step,
                node: idx,
                initial: spec.threshold,
            });
        }
        for (port, &src) in inputs.iter().enumerate() {
            let kind = if port == 0 {
                EdgeKind::Main
            } else {
                EdgeKind::Skip
            };
            self.net.graph.add_edge(
                src,
                idx,
                Edge {
                    port: port as u32,
                    kind,
                },
            );
        }
        idx
    }

    fn layer(&mut self, name: &str, kind: LayerKind, act: Activation) {
        let id = match self.net.weights.iter().position(|w| w.name == name) {
            Some(i) => WeightId(i),
            None => {
                self.net.weights.push(WeightSet {
                    name: name.into(),
                    kind,
                    span: Span::default(),
                });
                WeightId(self.net.weights.len() - 1)
            }
        };
        let step = self.net.applications(id) + 1;
        let input = self.shape_of(self.last);
        let (op, shape) = match kind {
            LayerKind::Conv {
                out_ch,
                kernel,
                stride,
                pad,
                ..
            } => {
                let h = (input.h + 2 * pad).saturating_sub(kernel) / stride + 1;
                let w = (input.w + 2 * pad).saturating_sub(kernel) / stride + 1;
                (Op::Conv { weights: id }, Shape::new(out_ch, h, w))
            }
            LayerKind::Fc { outputs, .. } => (Op::Fc { weights: id }, Shape::new(outputs, 1, 1)),
        };
        let domain = match act {
            Activation::Spiking(_) => Domain::Snn,
            Activation::Relu => Domain::Ann,
            Activation::None => self.domain_of(self.last),
        };
        let from = self.cross_to(self.last, domain);
        self.last = self.push(name.into(), op, act, shape, domain, &[from], step);
    }

    /// `Name(I,O,KxK/S)` with padding ⌊K/2⌋ and activation `act`.
    pub fn conv(mut self, name: &str, i: u64, o: u64, k: u64, s: u64, act: Activation) -> Self {
        let kind = LayerKind::Conv {
            in_ch: i,
            out_ch: o,
            kernel: k,
            stride: s,
            pad: k / 2,
        };
        self.layer(name, kind, act);
        self
    }

    /// `Name(X,Y)` with activation `act`.
    pub fn fc(mut self, name: &str, x: u64, y: u64, act: Activation) -> Self {
        self.layer(
            name,
            LayerKind::Fc {
                inputs: x,
                outputs: y,
            },
            act,
        );
        self
    }

    /// Applies an already declared weight set again (BackRes).
    pub fn reuse(mut self, name: &str, act: Activation) -> Self {
        let kind = self
            .net
            .weights
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.kind)
            .unwrap_or(LayerKind::Fc {
                inputs: 1,
                outputs: 1,
            });
        self.layer(name, kind, act);
        self
    }

    pub fn pool(mut self, kind: PoolKind, window: u64, stride: u64) -> Self {
        self.pools += 1;
        let s = self.shape_of(self.last);
        let shape = Shape::new(
            s.c,
            s.h.saturating_sub(window) / stride + 1,
            s.w.saturating_sub(window) / stride + 1,
        );
        let d = self.domain_of(self.last);
        let name = format!("Pool{}", self.pools);
        let op = Op::Pool {
            kind,
            window,
            stride,
        };
        self.last = self.push(name, op, Activation::None, shape, d, &[self.last], 1);
        self
    }

    pub fn dropout(mut self, p: f32) -> Self {
        self.drops += 1;
        let s = self.shape_of(self.last);
        let d = self.domain_of(self.last);
        let name = format!("Dropout{}", self.drops);
        self.last = self.push(
            name,
            Op::Dropout { p },
            Activation::None,
            s,
            d,
            &[self.last],
            1,
        );
        self
    }

    /// Joins the output of `from` (same domain and spatial size) into the main path.
    pub fn join(mut self, from: NodeIndex, mode: JoinMode) -> Self {
        let a = self.shape_of(self.last);
        let b = self.shape_of(from);
        let shape = match mode {
            JoinMode::Concat => Shape::new(a.c + b.c, a.h, a.w),
            JoinMode::Add => a,
        };
        let d = self.domain_of(self.last);
        let from = self.cross_to(from, d);
        let name = format!("Join{}", self.net.graph.node_count());
        let op = Op::Join { mode };
        self.last = self.push(name, op, Activation::None, shape, d, &[self.last, from], 1);
        self
    }

    pub fn build(mut self) -> Network {
        self.net.output = self.last;
        self.net
    }
}
