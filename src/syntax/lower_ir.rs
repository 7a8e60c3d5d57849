//! AST → IR: one [`Network`] per `network` block, before any pass.
//!
//! The builder lays out the main path in source order (an `Input` node first), records
//! repeat regions in [`Network::repeats`] (inner regions before the regions that contain
//! them), gives unresolved layers `Op::Layer` with the written name, and turns each
//! `skip A -> B` into an [`Op::Join`] before B's first application with [`EdgeKind::Skip`]
//! edges; pools that lie between A and B on the main path are copied onto the skip path.
//! Activations are resolved against the network's `neuron` setting; a layer with none gets
//! that neuron, except the last weighted layer, whose output is the logits.

use std::collections::HashMap;

use miette::Diagnostic;
use petgraph::graph::{DiGraph, NodeIndex};
use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::ir::*;
use crate::span::Span;
use crate::syntax::ast::{self, ActivationDecl, ChainItem, ChainKind, NetworkDecl, SettingKind};

#[derive(Debug, Error, Diagnostic)]
pub enum NetworkError {
    #[error("network `{name}` has no `input` setting")]
    #[diagnostic(
        code(snnc::network::missing_input),
        help("add the input shape, channels × height × width, e.g. `input 3x32x32`")
    )]
    MissingInput {
        name: String,
        #[label("this network")]
        span: Span,
    },

    #[error("network `{name}` has no layers")]
    #[diagnostic(
        code(snnc::network::no_layers),
        help("add layers such as `Conv1(3,64,3x3/1) LIF` and `FC1(4096,10)`")
    )]
    NoLayers {
        name: String,
        #[label("empty network")]
        span: Span,
    },

    #[error("a second network named `{name}`")]
    #[diagnostic(
        code(snnc::network::duplicate_name),
        help("give every network of a file its own name")
    )]
    DuplicateName {
        name: String,
        #[label(primary, "already used")]
        span: Span,
        #[label("first network `{name}`")]
        first: Span,
    },

    #[error("`{name}` takes no activation")]
    #[diagnostic(
        code(snnc::network::activation_on_pool),
        help("only convolutions and FC layers have activations; remove it")
    )]
    ActivationOnNonLayer {
        name: String,
        #[label("activation on `{name}`")]
        span: Span,
    },

    #[error("unknown skip endpoint `{name}`")]
    #[diagnostic(code(snnc::skip::unknown_endpoint))]
    UnknownSkipEndpoint {
        name: String,
        #[label("no layer `{name}` in this network")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("skip `{from} -> {to}` points backwards: `{from}` comes after `{to}`")]
    #[diagnostic(
        code(snnc::skip::backwards),
        help("a skip connection runs forward: write `skip {to} -> {from}` if that was meant")
    )]
    SkipBackwards {
        from: String,
        to: String,
        #[label("backwards skip")]
        span: Span,
    },

    #[error("the skip paths need more than {max} pool copies", max = crate::ir::MAX_APPLICATIONS)]
    #[diagnostic(
        code(snnc::skip::too_large),
        help("pools between a skip's ends are copied onto its path; use fewer skips across many pools")
    )]
    SkipPathsTooLarge {
        #[label("this skip goes over the limit")]
        span: Span,
    },

    #[error("skips into `{to}` mix `concat` and `add`")]
    #[diagnostic(
        code(snnc::skip::mode_conflict),
        help("all skips into one layer join the same way")
    )]
    SkipModeConflict {
        to: String,
        #[label(primary, "this one differs")]
        span: Span,
        #[label("first skip into `{to}`")]
        first: Span,
    },
}

/// Builds every network of the file. Networks with errors are left out of the program
/// (their diagnostics say why).
pub fn build(file: &ast::SourceFile) -> (Program, Diagnostics) {
    let mut diags = Diagnostics::new();
    let mut program = Program::default();
    let mut seen: std::collections::HashMap<&str, Span> = std::collections::HashMap::new();
    for decl in &file.networks {
        if let Some(first) = seen.get(decl.name.as_str()) {
            diags.push(NetworkError::DuplicateName {
                name: decl.name.clone(),
                span: decl.name_span,
                first: *first,
            });
            continue;
        }
        seen.insert(&decl.name, decl.name_span);
        let mut d = Diagnostics::new();
        let net = build_network(decl, &mut d);
        let ok = !d.has_errors();
        diags.extend(d);
        if let (true, Some(net)) = (ok, net) {
            program.networks.push(net);
        }
    }
    (program, diags)
}

struct Builder<'a> {
    g: DiGraph<Node, Edge>,
    prev: NodeIndex,
    repeats: Vec<RepeatRegion>,
    /// The main path in order (the input first).
    chain: Vec<NodeIndex>,
    settings: &'a Settings,
    last_layer: Option<Span>,
    pools: u32,
    dropouts: u32,
    diags: &'a mut Diagnostics,
}

pub fn build_network(decl: &NetworkDecl, diags: &mut Diagnostics) -> Option<Network> {
    let mut settings = Settings::default();
    for s in &decl.settings {
        match &s.kind {
            SettingKind::Input(shape) => settings.input = Some(*shape),
            SettingKind::Timesteps(t) => settings.timesteps = Some(*t),
            SettingKind::Encode(e) => settings.encode = *e,
            SettingKind::Neuron(n) => {
                let leak = if n.kind == NeuronKind::If {
                    1.0
                } else {
                    n.leak.unwrap_or(0.99)
                };
                settings.neuron = NeuronSpec {
                    kind: n.kind,
                    leak,
                    threshold: n.threshold.unwrap_or(1.0),
                    reset: n.reset.unwrap_or(Reset::Subtract),
                };
            }
            SettingKind::Surrogate { gamma } => settings.surrogate_gamma = *gamma,
            SettingKind::Method(m) => settings.method = *m,
            SettingKind::Stdp(st) => settings.stdp = *st,
        }
    }
    if let Some((c, _)) = decl.classifier {
        settings.classifier = c;
    }
    if settings.input.is_none() {
        diags.push(NetworkError::MissingInput {
            name: decl.name.clone(),
            span: decl.name_span,
        });
    }
    if decl.chain.is_empty() {
        diags.push(NetworkError::NoLayers {
            name: decl.name.clone(),
            span: decl.name_span,
        });
        return None;
    }
    let mut g = DiGraph::new();
    let input = g.add_node(Node::new(
        "Input",
        Op::Input,
        Activation::None,
        decl.name_span,
    ));
    let mut b = Builder {
        g,
        prev: input,
        repeats: Vec::new(),
        chain: vec![input],
        settings: &settings,
        last_layer: last_layer_span(&decl.chain),
        pools: 0,
        dropouts: 0,
        diags,
    };
    // Recursion follows block nesting, which the parser bounds by `syntax::MAX_DEPTH`.
    b.emit(&decl.chain, None);
    b.skips(&decl.skips);
    let Builder {
        g, prev, repeats, ..
    } = b;
    Some(Network {
        name: decl.name.clone(),
        span: decl.name_span,
        settings,
        weights: Vec::new(),
        graph: g,
        input,
        output: prev,
        repeats,
        thresholds: Vec::new(),
    })
}

/// The span of the last weighted layer in source order.
fn last_layer_span(items: &[ChainItem]) -> Option<Span> {
    for it in items.iter().rev() {
        match &it.kind {
            ChainKind::Layer { .. } => return Some(it.span),
            ChainKind::Block(inner) => {
                if let Some(s) = last_layer_span(inner) {
                    return Some(s);
                }
            }
            _ => {}
        }
    }
    None
}

impl Builder<'_> {
    fn neuron(&self, d: &ast::NeuronDecl) -> NeuronSpec {
        let base = self.settings.neuron;
        let leak = match d.kind {
            NeuronKind::If => 1.0,
            NeuronKind::Lif => d.leak.unwrap_or(if base.kind == NeuronKind::Lif {
                base.leak
            } else {
                0.99
            }),
        };
        NeuronSpec {
            kind: d.kind,
            leak,
            threshold: d.threshold.unwrap_or(base.threshold),
            reset: d.reset.unwrap_or(base.reset),
        }
    }

    fn activation(&self, a: Option<&ActivationDecl>) -> Activation {
        match a {
            Some(ActivationDecl::Relu) => Activation::Relu,
            Some(ActivationDecl::Spiking(n)) => Activation::Spiking(self.neuron(n)),
            None => Activation::Spiking(self.settings.neuron),
        }
    }

    fn push(&mut self, node: Node) -> NodeIndex {
        let n = self.g.add_node(node);
        self.g.add_edge(
            self.prev,
            n,
            Edge {
                port: 0,
                kind: EdgeKind::Main,
            },
        );
        self.prev = n;
        self.chain.push(n);
        n
    }

    /// Emits items; `inherited` is the activation of an enclosing block.
    fn emit(
        &mut self,
        items: &[ChainItem],
        inherited: Option<&ActivationDecl>,
    ) -> Option<(NodeIndex, NodeIndex)> {
        let mut first = None;
        for it in items {
            let before = self.g.node_count();
            let own = it.activation.as_ref().map(|(a, _)| a);
            let act = own.or(inherited);
            match &it.kind {
                ChainKind::Layer {
                    name, signature, ..
                } => {
                    let activation = if act.is_none() && Some(it.span) == self.last_layer {
                        Activation::None
                    } else {
                        self.activation(act)
                    };
                    self.push(Node::new(
                        name.clone(),
                        Op::Layer {
                            signature: *signature,
                        },
                        activation,
                        it.span,
                    ));
                }
                ChainKind::Pool {
                    name,
                    kind,
                    window,
                    stride,
                } => {
                    self.pools += 1;
                    if let Some((_, s)) = it.activation {
                        self.diags.push(NetworkError::ActivationOnNonLayer {
                            name: name.clone(),
                            span: s,
                        });
                    }
                    let n = format!("{}{}", name, self.pools);
                    self.push(Node::new(
                        n,
                        Op::Pool {
                            kind: *kind,
                            window: *window,
                            stride: *stride,
                        },
                        Activation::None,
                        it.span,
                    ));
                }
                ChainKind::Dropout { p } => {
                    self.dropouts += 1;
                    if let Some((_, s)) = it.activation {
                        self.diags.push(NetworkError::ActivationOnNonLayer {
                            name: "Dropout".into(),
                            span: s,
                        });
                    }
                    let n = format!("Dropout{}", self.dropouts);
                    self.push(Node::new(
                        n,
                        Op::Dropout { p: *p },
                        Activation::None,
                        it.span,
                    ));
                }
                ChainKind::Block(inner) => {
                    self.emit(inner, act);
                }
            }
            if self.g.node_count() == before {
                continue;
            }
            let start = NodeIndex::new(before);
            first.get_or_insert(start);
            if let Some((count, rspan)) = it.repeat {
                if count > 1 {
                    self.repeats.push(RepeatRegion {
                        first: start,
                        last: self.prev,
                        count,
                        span: it.span.join(rspan),
                    });
                }
            }
        }
        first.map(|f| (f, self.prev))
    }

    fn skips(&mut self, skips: &[ast::SkipDecl]) {
        if skips.is_empty() {
            return;
        }
        // Position of every application of every name on the main path.
        let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
        for (pos, &n) in self.chain.iter().enumerate() {
            if matches!(self.g[n].op, Op::Layer { .. }) {
                positions
                    .entry(self.g[n].name.as_str())
                    .or_default()
                    .push(pos);
            }
        }
        let mut names: Vec<String> = positions.keys().map(|s| s.to_string()).collect();
        names.sort();
        // Suggestions compare against every name: a budget keeps many bad skips linear.
        let mut budget: usize = 200_000;
        let mut joins: HashMap<usize, (NodeIndex, JoinMode, Span, u32)> = HashMap::new();
        let mut plans = Vec::new();
        for s in skips {
            let Some(to_pos) = positions.get(s.to.as_str()).map(|v| v[0]) else {
                self.diags.push(NetworkError::UnknownSkipEndpoint {
                    name: s.to.clone(),
                    span: s.to_span,
                    help: suggest(&s.to, &names, &mut budget),
                });
                continue;
            };
            let from_pos = match &s.from {
                None => 0,
                Some(f) => match positions.get(f.as_str()) {
                    None => {
                        self.diags.push(NetworkError::UnknownSkipEndpoint {
                            name: f.clone(),
                            span: s.from_span,
                            help: suggest(f, &names, &mut budget),
                        });
                        continue;
                    }
                    Some(v) => match v.iter().rev().find(|&&p| p < to_pos) {
                        Some(&p) => p,
                        None => {
                            self.diags.push(NetworkError::SkipBackwards {
                                from: f.clone(),
                                to: s.to.clone(),
                                span: s.span,
                            });
                            continue;
                        }
                    },
                },
            };
            let mode = match s.mode {
                ast::JoinModeDecl::Concat => JoinMode::Concat,
                ast::JoinModeDecl::Add => JoinMode::Add,
            };
            if let Some((_, m, first, _)) = joins.get(&to_pos) {
                if *m != mode {
                    self.diags.push(NetworkError::SkipModeConflict {
                        to: s.to.clone(),
                        span: s.span,
                        first: *first,
                    });
                    continue;
                }
            } else {
                joins.insert(to_pos, (NodeIndex::end(), mode, s.span, 0));
            }
            plans.push((from_pos, to_pos, s.span));
        }
        // Create the joins, then the skip paths.
        let mut to_positions: Vec<usize> = joins.keys().copied().collect();
        to_positions.sort_unstable();
        for pos in to_positions {
            let target = self.chain[pos];
            let Some(entry) = joins.get_mut(&pos) else {
                continue;
            };
            let pred = self.chain[pos - 1];
            let tname = self.g[target].name.clone();
            // A join is made by its skips: its span is the first skip's (the line to edit
            // when the join fails), not the target layer's.
            let span = entry.2;
            let join = self.g.add_node(Node::new(
                format!("Join→{tname}"),
                Op::Join { mode: entry.1 },
                Activation::None,
                span,
            ));
            if let Some(e) = self.g.find_edge(pred, target) {
                self.g.remove_edge(e);
            }
            self.g.add_edge(
                pred,
                join,
                Edge {
                    port: 0,
                    kind: EdgeKind::Main,
                },
            );
            self.g.add_edge(
                join,
                target,
                Edge {
                    port: 0,
                    kind: EdgeKind::Main,
                },
            );
            entry.0 = join;
        }
        // Pool positions on the main path, and the skip-path pool copies already made per
        // source (skips from one source share them): work and nodes stay linear.
        let pool_pos: Vec<usize> = (0..self.chain.len())
            .filter(|&p| matches!(self.g[self.chain[p]].op, Op::Pool { .. }))
            .collect();
        let mut paths: HashMap<usize, Vec<NodeIndex>> = HashMap::new();
        for (from_pos, to_pos, span) in plans {
            let Some(entry) = joins.get_mut(&to_pos) else {
                continue;
            };
            entry.3 += 1;
            let port = entry.3;
            let join = entry.0;
            let lo = pool_pos.partition_point(|&p| p <= from_pos);
            let hi = pool_pos.partition_point(|&p| p < to_pos);
            let needed = hi.saturating_sub(lo);
            let path = paths.entry(from_pos).or_default();
            while path.len() < needed {
                if self.g.node_count() as u64 >= crate::ir::MAX_APPLICATIONS {
                    self.diags.push(NetworkError::SkipPathsTooLarge { span });
                    return;
                }
                let n = self.chain[pool_pos[lo + path.len()]];
                let Op::Pool {
                    kind,
                    window,
                    stride,
                } = self.g[n].op
                else {
                    break;
                };
                let name = format!("{} (skip)", self.g[n].name);
                let copy = self.g.add_node(Node::new(
                    name,
                    Op::Pool {
                        kind,
                        window,
                        stride,
                    },
                    Activation::None,
                    span,
                ));
                let prev = path.last().copied().unwrap_or(self.chain[from_pos]);
                self.g.add_edge(
                    prev,
                    copy,
                    Edge {
                        port: 0,
                        kind: EdgeKind::Skip,
                    },
                );
                path.push(copy);
            }
            let src = if needed == 0 {
                self.chain[from_pos]
            } else {
                path[needed - 1]
            };
            self.g.add_edge(
                src,
                join,
                Edge {
                    port,
                    kind: EdgeKind::Skip,
                },
            );
        }
    }
}

/// "did you mean `X`?" for a name close to one that exists.
pub(crate) fn suggest(name: &str, names: &[String], budget: &mut usize) -> Option<String> {
    if names.len() > *budget {
        return None;
    }
    *budget -= names.len();
    let lower = name.to_ascii_lowercase();
    let best = names
        .iter()
        .filter(|n| {
            n.to_ascii_lowercase() == lower || edit_distance(&n.to_ascii_lowercase(), &lower) <= 2
        })
        .min_by_key(|n| edit_distance(n, name))?;
    Some(format!("did you mean `{best}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 2 || a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}
