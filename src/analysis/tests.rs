//! Unit tests on hand-built final IR: Eq. 8 on hand-computed layers, the MAC/AC rule,
//! shared parameters, activity and the EE identity.

use super::*;
use crate::ir::{Domain, Edge, EdgeKind, JoinMode, NeuronSpec, Settings, WeightId, WeightSet};
use crate::syntax::span::Span;
use petgraph::graph::DiGraph;

const LIF: Activation = Activation::Spiking(NeuronSpec {
    kind: NeuronKind::Lif,
    leak: 0.99,
    threshold: 1.0,
    reset: crate::ir::Reset::Subtract,
});

/// A chain built by hand, shapes written out as computed by hand.
struct Chain {
    net: Network,
}

impl Chain {
    fn new(input: Shape) -> Chain {
        let mut graph = DiGraph::new();
        let mut n = crate::ir::Node::new("Input", Op::Input, Activation::None, Span::default());
        n.out_shape = Some(input);
        let ix = graph.add_node(n);
        Chain {
            net: Network {
                name: "Hand".into(),
                span: Span::default(),
                settings: Settings {
                    input: Some(input),
                    ..Settings::default()
                },
                weights: vec![],
                graph,
                input: ix,
                output: ix,
                repeats: vec![],
                thresholds: vec![],
            },
        }
    }

    fn push(mut self, name: &str, op: Op, step: u32, act: Activation, out: Shape) -> Chain {
        let mut n = crate::ir::Node::new(name, op, act, Span::default());
        n.step = step;
        n.out_shape = Some(out);
        // As the `hybrid` pass: nodes without activation take their input's domain.
        n.domain = Some(match act {
            Activation::Relu => Domain::Ann,
            Activation::Spiking(_) => Domain::Snn,
            Activation::None => self.net.graph[self.net.output]
                .domain
                .unwrap_or(Domain::Ann),
        });
        let ix = self.net.graph.add_node(n);
        self.net.graph.add_edge(
            self.net.output,
            ix,
            Edge {
                port: 0,
                kind: EdgeKind::Main,
            },
        );
        self.net.output = ix;
        self
    }

    fn layer(mut self, name: &str, kind: LayerKind, act: Activation, out: Shape) -> Chain {
        let (id, step) = match self.net.weights.iter().position(|w| w.name == name) {
            Some(i) => (WeightId(i), self.net.applications(WeightId(i)) + 1),
            None => {
                self.net.weights.push(WeightSet {
                    name: name.into(),
                    kind,
                    span: Span::default(),
                });
                (WeightId(self.net.weights.len() - 1), 1)
            }
        };
        let op = match kind {
            LayerKind::Conv { .. } => Op::Conv { weights: id },
            LayerKind::Fc { .. } => Op::Fc { weights: id },
        };
        self.push(name, op, step, act, out)
    }

    fn conv(self, name: &str, i: u64, o: u64, k: u64, act: Activation, out: Shape) -> Chain {
        let kind = LayerKind::Conv {
            in_ch: i,
            out_ch: o,
            kernel: k,
            stride: 1,
            pad: k / 2,
        };
        self.layer(name, kind, act, out)
    }

    fn fc(self, name: &str, x: u64, y: u64, act: Activation) -> Chain {
        let kind = LayerKind::Fc {
            inputs: x,
            outputs: y,
        };
        self.layer(name, kind, act, Shape::new(y, 1, 1))
    }

    fn pool(self, out: Shape) -> Chain {
        let op = Op::Pool {
            kind: PoolKind::Avg,
            window: 2,
            stride: 2,
        };
        self.push("Pool", op, 1, Activation::None, out)
    }
}

fn s(c: u64, h: u64, w: u64) -> Shape {
    Shape::new(c, h, w)
}

/// VGG3x2-like, all spiking: Conv1 LIF, Pool, Conv2 ×2 LIF, Pool, FC1 LIF, FC2 logits.
fn all_spiking() -> Network {
    Chain::new(s(3, 32, 32))
        .conv("Conv1", 3, 64, 3, LIF, s(64, 32, 32))
        .pool(s(64, 16, 16))
        .conv("Conv2", 64, 64, 3, LIF, s(64, 16, 16))
        .conv("Conv2", 64, 64, 3, LIF, s(64, 16, 16))
        .pool(s(64, 8, 8))
        .fc("FC1", 4096, 512, LIF)
        .fc("FC2", 512, 10, Activation::None)
        .net
}

fn uniform(rate: f64, t: u32) -> Options {
    Options {
        timesteps: Some(t),
        activity: Activity::Uniform(rate),
        energy: EnergyModel::INT32,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn eq8_on_hand_computed_layers() {
    let conv = LayerKind::Conv {
        in_ch: 3,
        out_ch: 64,
        kernel: 3,
        stride: 1,
        pad: 1,
    };
    // O² · N · k² · M = 32² · 3 · 9 · 64
    assert_eq!(layer_ops(&conv, Some(s(64, 32, 32))), 1_769_472);
    // Non-square output: O_h · O_w · N · k² · M = 7 · 3 · 16 · 25 · 8
    let conv = LayerKind::Conv {
        in_ch: 16,
        out_ch: 8,
        kernel: 5,
        stride: 2,
        pad: 0,
    };
    assert_eq!(layer_ops(&conv, Some(s(8, 7, 3))), 67_200);
    let fc = LayerKind::Fc {
        inputs: 4096,
        outputs: 512,
    };
    assert_eq!(layer_ops(&fc, Some(s(512, 1, 1))), 2_097_152);
}

#[test]
fn rows_params_and_depth() {
    let e = estimate(&all_spiking(), &uniform(0.1, 25));
    let names: Vec<_> = e.layers.iter().map(|l| (l.name.as_str(), l.step)).collect();
    assert_eq!(
        names,
        [
            ("Conv1", 1),
            ("Pool", 1),
            ("Conv2", 1),
            ("Conv2", 2),
            ("Pool", 1),
            ("FC1", 1),
            ("FC2", 1)
        ]
    );
    let params: Vec<_> = e.layers.iter().map(|l| l.params).collect();
    assert_eq!(params, [1728, 0, 36864, 0, 0, 2_097_152, 5120]);
    assert_eq!(e.params, 1728 + 36864 + 2_097_152 + 5120);
    assert_eq!(e.logical_depth, 5);
    let ops: Vec<_> = e.layers.iter().map(|l| l.ops).collect();
    // Conv2: 16² · 64 · 9 · 64 on both applications.
    assert_eq!(
        ops,
        [1_769_472, 0, 9_437_184, 9_437_184, 0, 2_097_152, 5120]
    );
    let kinds: Vec<_> = e.layers.iter().map(|l| l.op).collect();
    use OpKind::*;
    assert_eq!(kinds, [Ac, None, Ac, Ac, None, Ac, Ac]);
    assert_eq!(
        e.flops_ann,
        (1_769_472 + 2 * 9_437_184 + 2_097_152 + 5120) as f64
    );
}

#[test]
fn ee_identity_all_spiking() {
    for (rate, t) in [(0.1, 25u32), (0.05, 10), (0.3, 100), (1.0, 1)] {
        for energy in [EnergyModel::INT32, EnergyModel::FP32] {
            let mut o = uniform(rate, t);
            o.energy = energy;
            let e = estimate(&all_spiking(), &o);
            let expected = energy.e_mac / (energy.e_ac * rate * f64::from(t));
            assert!(close(e.ee.unwrap(), expected), "{rate} {t}: {:?}", e.ee);
            assert!(close(e.flops_snn, e.flops_ann * rate));
        }
    }
    // Table I: 32 / (SA · T).
    let e = estimate(&all_spiking(), &uniform(0.1, 25));
    assert!(close(e.ee.unwrap(), 12.8));
    assert!(estimate(&all_spiking(), &uniform(0.0, 25)).ee.is_none());
}

#[test]
fn hybrid_relu_then_lif() {
    // Conv1 ReLU (MAC, once), Conv2 LIF (AC), FC1 logits after LIF (AC).
    let net = Chain::new(s(1, 4, 4))
        .conv("Conv1", 1, 2, 3, Activation::Relu, s(2, 4, 4))
        .conv("Conv2", 2, 2, 3, LIF, s(2, 4, 4))
        .fc("FC1", 32, 3, Activation::None)
        .net;
    let mut paper = uniform(0.5, 4);
    paper.energy = EnergyModel::INT32.with_convention(Convention::Paper);
    let e = estimate(&net, &paper);
    let c1 = 16 * 2 * 9; // 288
    let c2 = 16 * 2 * 9 * 2; // 576
    let f1 = 32 * 3; // 96
    assert_eq!(
        e.layers.iter().map(|l| l.ops).collect::<Vec<_>>(),
        [c1, c2, f1]
    );
    assert_eq!(
        e.layers.iter().map(|l| l.op).collect::<Vec<_>>(),
        [OpKind::Mac, OpKind::Ac, OpKind::Ac]
    );
    let e_snn = 288.0 * 3.2 + 576.0 * 0.5 * 0.1 * 4.0 + 96.0 * 0.5 * 0.1 * 4.0;
    let e_ann = (288.0 + 576.0 + 96.0) * 3.2;
    assert!(close(e.e_snn_pj, e_snn));
    assert!(close(e.e_ann_pj, e_ann));
    assert!(close(e.ee.unwrap(), e_ann / e_snn));
    assert!(close(e.flops_snn, 288.0 + 576.0 * 0.5 + 96.0 * 0.5));
    // Strict (the default): Conv2 is fed real values at each of the 4 steps: 576 MACs × 4.
    let e = estimate(&net, &uniform(0.5, 4));
    assert_eq!(
        e.layers.iter().map(|l| (l.op, l.times)).collect::<Vec<_>>(),
        [(OpKind::Mac, 1), (OpKind::Mac, 4), (OpKind::Ac, 4)]
    );
    let e_snn = 288.0 * 3.2 + 576.0 * 3.2 * 4.0 + 96.0 * 0.5 * 0.1 * 4.0;
    assert!(close(e.e_snn_pj, e_snn), "{}", e.e_snn_pj);
    assert!(close(e.ee.unwrap(), e_ann / e_snn));
    assert!(close(e.flops_snn, 288.0 + 576.0 + 96.0 * 0.5));
}

#[test]
fn logits_after_relu_or_input_are_mac() {
    // STDP style: spiking conv, ReLU FC1, logits FC2 → MAC.
    let net = Chain::new(s(1, 2, 2))
        .conv("Conv1", 1, 1, 1, LIF, s(1, 2, 2))
        .fc("FC1", 4, 4, Activation::Relu)
        .fc("FC2", 4, 2, Activation::None)
        .net;
    let e = estimate(&net, &uniform(0.2, 10));
    let ops: Vec<_> = e.layers.iter().map(|l| l.op).collect();
    assert_eq!(ops, [OpKind::Ac, OpKind::Mac, OpKind::Mac]);
    assert!(close(
        e.e_snn_pj,
        4.0 * 0.2 * 0.1 * 10.0 + 16.0 * 3.2 + 8.0 * 3.2
    ));
    // A lone logits layer on the input.
    let net = Chain::new(s(1, 2, 2)).fc("FC1", 4, 2, Activation::None).net;
    let e = estimate(&net, &uniform(0.2, 10));
    assert_eq!(e.layers[0].op, OpKind::Mac);
    assert!(close(e.ee.unwrap(), 1.0));
}

#[test]
fn measured_activity_scales_by_input_spikes() {
    let mut rates = HashMap::new();
    rates.insert(("Input".to_string(), 1), 0.4);
    rates.insert(("Conv1".to_string(), 1), 0.2);
    rates.insert(("Conv2".to_string(), 1), 0.1);
    rates.insert(("Conv2".to_string(), 2), 0.05);
    let o = Options {
        timesteps: Some(2),
        activity: Activity::Measured {
            rates,
            fallback: 0.3,
        },
        energy: EnergyModel::INT32,
    };
    let e = estimate(&all_spiking(), &o);
    let sa: Vec<_> = e.layers.iter().map(|l| l.sa).collect();
    // Conv1 ← input (0.4); Conv2@1 ← Conv1 through a pool (0.2); Conv2@2 ← Conv2@1 (0.1);
    // FC1 ← Conv2@2 (0.05); FC2 ← FC1 (unmeasured: fallback 0.3).
    assert_eq!(sa, [0.4, 1.0, 0.2, 0.1, 1.0, 0.05, 0.3]);
    let conv2 = &e.layers[3];
    assert!(close(conv2.energy_pj, 9_437_184.0 * 0.1 * 0.1 * 2.0));
    assert_eq!(e.spike_rate, 0.3);
}

#[test]
fn join_averages_rates_by_features() {
    // Input (rate 0.4, 1×2×2 = 4 features) concatenated with Conv1 (rate 0.1, 3×2×2 = 12).
    let mut c = Chain::new(s(1, 2, 2)).conv("Conv1", 1, 3, 1, LIF, s(3, 2, 2));
    let conv1 = c.net.output;
    let input = c.net.input;
    c = c.push(
        "Join→Conv2",
        Op::Join {
            mode: JoinMode::Concat,
        },
        1,
        Activation::None,
        s(4, 2, 2),
    );
    let join = c.net.output;
    c.net.graph.add_edge(
        input,
        join,
        Edge {
            port: 1,
            kind: EdgeKind::Skip,
        },
    );
    let _ = conv1;
    let net = c.conv("Conv2", 4, 4, 1, LIF, s(4, 2, 2)).net;
    let mut rates = HashMap::new();
    rates.insert(("Input".to_string(), 1), 0.4);
    rates.insert(("Conv1".to_string(), 1), 0.1);
    let o = Options {
        timesteps: Some(1),
        activity: Activity::Measured {
            rates,
            fallback: 0.0,
        },
        energy: EnergyModel::INT32,
    };
    let e = estimate(&net, &o);
    assert_eq!(e.layers.len(), 2, "joins get no row");
    assert!(close(e.layers[1].sa, (12.0 * 0.1 + 4.0 * 0.4) / 16.0));
}

#[test]
fn timesteps_default_and_override() {
    let mut net = all_spiking();
    let mut o = uniform(0.1, 1);
    o.timesteps = None;
    // No `timesteps`: the method's default, the T `snnc train` runs with (AGD 10,
    // conversion 500, STDP 100).
    net.settings.method = crate::ir::Method::Agd;
    assert_eq!(estimate(&net, &o).timesteps, 10);
    net.settings.method = crate::ir::Method::Conversion;
    assert_eq!(estimate(&net, &o).timesteps, 500);
    net.settings.method = crate::ir::Method::Stdp;
    assert_eq!(estimate(&net, &o).timesteps, 100);
    net.settings.timesteps = Some(12);
    assert_eq!(estimate(&net, &o).timesteps, 12);
    o.timesteps = Some(7);
    assert_eq!(estimate(&net, &o).timesteps, 7);
}

#[test]
fn huge_layers_saturate_without_panicking() {
    let big = u64::MAX / 2;
    let net = Chain::new(s(big, big, big))
        .conv("Conv1", big, big, big, LIF, s(big, big, big))
        .conv("Conv2", big, big, big, LIF, s(big, big, big))
        .net;
    let e = estimate(&net, &uniform(0.1, u32::MAX));
    assert_eq!(e.layers[0].ops, u128::MAX);
    assert_eq!(e.params, u64::MAX);
    assert!(e.e_ann_pj.is_finite() && e.e_snn_pj.is_finite());
}

/// Input 1×4×4 → Conv1(1,2,3x3/1) LIF → Conv2(2,2,3x3/1) LIF → join(Conv2, skip Conv1) →
/// FC1(·,10) logits: issue 11's skip example.
fn skip_net(mode: JoinMode) -> Network {
    let mut c = Chain::new(s(1, 4, 4)).conv("Conv1", 1, 2, 3, LIF, s(2, 4, 4));
    let conv1 = c.net.output;
    c = c.conv("Conv2", 2, 2, 3, LIF, s(2, 4, 4));
    let joined = match mode {
        JoinMode::Add => s(2, 4, 4),
        JoinMode::Concat => s(4, 4, 4),
    };
    c = c.push("Join→FC1", Op::Join { mode }, 1, Activation::None, joined);
    let join = c.net.output;
    c.net.graph.add_edge(
        conv1,
        join,
        Edge {
            port: 1,
            kind: EdgeKind::Skip,
        },
    );
    let features = joined.features().unwrap();
    c.fc("FC1", features, 10, Activation::None).net
}

fn measured(pairs: &[(&str, u32, f64)], t: u32) -> Options {
    Options {
        timesteps: Some(t),
        activity: Activity::Measured {
            rates: pairs
                .iter()
                .map(|&(n, st, r)| ((n.to_string(), st), r))
                .collect(),
            fallback: 0.0,
        },
        energy: EnergyModel::INT32,
    }
}

#[test]
fn add_join_sums_rates_concat_averages() {
    // Issue 11: input 0.5, Conv1 0.2, Conv2 0.4, T = 10.
    let o = measured(
        &[("Input", 1, 0.5), ("Conv1", 1, 0.2), ("Conv2", 1, 0.4)],
        10,
    );
    let e = estimate(&skip_net(JoinMode::Add), &o);
    let fc1 = e.layers.last().unwrap();
    assert_eq!(fc1.ops, 320);
    assert!(close(fc1.sa, 0.6), "{}", fc1.sa);
    // 320 ops · 0.6 · 0.1 pJ · 10 steps.
    assert!(close(fc1.energy_pj, 192.0), "{}", fc1.energy_pj);
    // E_ANN = (288 + 576 + 320) · 3.2 = 3788.8; E_SNN = 288·0.5 + 576·0.2 + 320·0.6 (each
    // ·0.1·10) = 144 + 115.2 + 192 = 451.2; EE = 8.397 (the averaging rule gave 10.67).
    assert!(close(e.e_ann_pj, 3788.8));
    assert!(close(e.e_snn_pj, 451.2), "{}", e.e_snn_pj);
    assert_eq!(format!("{:.2}", e.ee.unwrap()), "8.40");
    // Concat keeps the feature-weighted mean (32 features each): 0.3.
    let e = estimate(&skip_net(JoinMode::Concat), &o);
    let fc1 = e.layers.last().unwrap();
    assert_eq!(fc1.ops, 640);
    assert!(close(fc1.sa, 0.3), "{}", fc1.sa);
    assert!(close(fc1.energy_pj, 640.0 * 0.3 * 0.1 * 10.0));
}

#[test]
fn direct_coded_spiking_layer_is_mac_at_every_step() {
    // Issue 11: a direct-coded Conv1(1,1,3x3/1) LIF on 8×8 at rate 0.2, T = 4, then logits.
    let mut net = Chain::new(s(1, 8, 8))
        .conv("Conv1", 1, 1, 3, LIF, s(1, 8, 8))
        .fc("FC1", 64, 10, Activation::None)
        .net;
    net.settings.encode = Encoding::Direct;
    let e = estimate(&net, &uniform(0.2, 4));
    let conv1 = &e.layers[0];
    assert_eq!(conv1.ops, 8 * 8 * 9); // 576 MACs per step
    assert_eq!((conv1.op, conv1.times), (OpKind::Mac, 4));
    assert!(close(conv1.energy_pj, 576.0 * 3.2 * 4.0)); // 7372.8 pJ
                                                        // FC1 accumulates Conv1's spikes: 640 · 0.2 · 0.1 · 4 = 51.2 pJ.
    assert_eq!(e.layers[1].op, OpKind::Ac);
    assert!(close(e.layers[1].energy_pj, 51.2));
    let ee = e.ee.unwrap();
    assert!(close(ee, 1216.0 * 3.2 / (7372.8 + 51.2)), "{ee}");
    assert!(ee <= 1.35);
    // The paper's convention prices Conv1 as accumulates at its own rate: EE = 32/(0.2·4).
    let mut o = uniform(0.2, 4);
    o.energy = EnergyModel::INT32.with_convention(Convention::Paper);
    let e = estimate(&net, &o);
    assert_eq!(e.layers[0].op, OpKind::Ac);
    assert!(close(e.ee.unwrap(), 40.0));
}

#[test]
fn max_pool_rate_rule() {
    assert!(close(max_pool_rate(0.1, 2), 1.0 - 0.9f64.powi(4))); // 0.3439
    assert!(close(max_pool_rate(0.5, 3), 1.0 - 0.5f64.powi(9)));
    assert_eq!(max_pool_rate(0.0, 2), 0.0);
    assert_eq!(max_pool_rate(1.0, 2), 1.0);
    assert_eq!(max_pool_rate(0.3, 1), 0.3);
    for r in [0.0, 0.01, 0.1, 0.25, 0.7, 1.0] {
        for w in [1u64, 2, 3, 7] {
            let m = max_pool_rate(r, w);
            assert!(
                m >= r && m <= (r * (w * w) as f64).min(1.0) + 1e-15,
                "{r} {w}"
            );
        }
    }
    assert!(max_pool_rate(0.5, u64::MAX).is_finite());
}

/// xorshift64*: a small deterministic generator for the sampling checks.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn pooling_spike_maps_by_sampling() {
    // A 2×2/2 max pool of a 64×64 Bernoulli(r) spike map over 50 steps: the pooled map fires
    // at least as often as its input, and at the rule's rate; an average pool keeps the mean
    // value exactly (what the next layer's accumulates are counted by).
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for r in [0.05, 0.2, 0.5] {
        let (n, steps) = (64usize, 50);
        let (mut spikes, mut max_fired, mut avg_sum) = (0usize, 0usize, 0.0f64);
        for _ in 0..steps {
            let map: Vec<bool> = (0..n * n).map(|_| rng.uniform() < r).collect();
            spikes += map.iter().filter(|&&b| b).count();
            for i in (0..n).step_by(2) {
                for j in (0..n).step_by(2) {
                    let w = [map[i * n + j], map[i * n + j + 1], map[(i + 1) * n + j]];
                    let w4 = map[(i + 1) * n + j + 1];
                    let k = w.iter().filter(|&&b| b).count() + usize::from(w4);
                    max_fired += usize::from(k > 0);
                    avg_sum += k as f64 / 4.0;
                }
            }
        }
        let cells = (steps * n * n / 4) as f64;
        let input_rate = spikes as f64 / (steps * n * n) as f64;
        let max_rate = max_fired as f64 / cells;
        assert!(max_rate > input_rate, "{r}: {max_rate} vs {input_rate}");
        let want = max_pool_rate(input_rate, 2);
        assert!((max_rate - want).abs() < 0.01, "{r}: {max_rate} vs {want}");
        assert!((avg_sum / cells - input_rate).abs() < 1e-12);
    }
}

#[test]
fn layer_after_a_pool_is_priced_by_the_pool_rule() {
    let build = |kind| {
        Chain::new(s(1, 4, 4))
            .conv("Conv1", 1, 1, 1, LIF, s(1, 4, 4))
            .push(
                "Pool",
                Op::Pool {
                    kind,
                    window: 2,
                    stride: 2,
                },
                1,
                Activation::None,
                s(1, 2, 2),
            )
            .fc("FC1", 4, 2, Activation::None)
            .net
    };
    let e = estimate(&build(PoolKind::Max), &uniform(0.1, 10));
    assert_eq!(e.layers[1].kind, "maxpool");
    assert!(close(e.layers[2].sa, 1.0 - 0.9f64.powi(4)));
    assert!(close(e.layers[2].energy_pj, 8.0 * 0.3439 * 0.1 * 10.0));
    let e = estimate(&build(PoolKind::Avg), &uniform(0.1, 10));
    assert!(close(e.layers[2].sa, 0.1));
}

#[test]
fn stochmax_heads_are_unique_parameters() {
    let mut net = all_spiking();
    let p = unique_parameters(&net);
    assert_eq!((p.head, p.total), (0, p.layers));
    assert_eq!(p.layers, 1728 + 36864 + 2_097_152 + 5120);
    net.settings.classifier = Classifier::Stochmax;
    let p = unique_parameters(&net);
    // FC2(512,10): ρ and r, each 512·10 weights + 10 biases.
    assert_eq!(p.head, 10_260);
    assert_eq!(p.total, p.layers + 10_260);
    let e = estimate(&net, &uniform(0.1, 25));
    assert_eq!(e.params, p.total);
    assert_eq!(e.parameters, p);
    // Shared weights stay counted once; the per-row params do not include the head.
    assert_eq!(
        e.layers.iter().map(|l| l.params).sum::<u64>(),
        p.layers,
        "rows sum to the layers' share"
    );
}

#[test]
fn price_is_estimate_at_measured_rates() {
    let net = all_spiking();
    let mut run = MeasuredRun {
        rates: [
            (("Conv1".to_string(), 1), 0.2),
            (("Conv2".to_string(), 1), 0.1),
            (("Conv2".to_string(), 2), f64::NAN),
        ]
        .into_iter()
        .collect(),
        input_rate: Some(0.4),
        fallback: 0.05,
        timesteps: 2,
    };
    let p = price(&net, &run, EnergyModel::INT32);
    let o = measured(
        &[("Input", 1, 0.4), ("Conv1", 1, 0.2), ("Conv2", 1, 0.1)],
        2,
    );
    let o = Options {
        activity: match o.activity {
            Activity::Measured { rates, .. } => Activity::Measured {
                rates,
                fallback: 0.05,
            },
            a => a,
        },
        ..o
    };
    let e = estimate(&net, &o);
    assert_eq!(
        (p.e_ann_pj, p.e_snn_pj, p.ee),
        (e.e_ann_pj, e.e_snn_pj, e.ee)
    );
    // By hand: Conv1 ← input 0.4, Conv2@1 ← 0.2, Conv2@2 ← 0.1, FC1 ← Conv2@2 (NaN: the
    // fallback 0.05), FC2 ← FC1 (fallback 0.05); each ·0.1 pJ·2 steps.
    let want = (1_769_472.0 * 0.4
        + 9_437_184.0 * 0.2
        + 9_437_184.0 * 0.1
        + 2_097_152.0 * 0.05
        + 5120.0 * 0.05)
        * 0.1
        * 2.0;
    assert!(close(p.e_snn_pj, want), "{} vs {want}", p.e_snn_pj);
    // T = 0 is read as 1; no input rate: the fallback.
    run.timesteps = 0;
    run.input_rate = None;
    let p1 = price(&net, &run, EnergyModel::INT32);
    let want1 = (1_769_472.0 * 0.05
        + 9_437_184.0 * 0.2
        + 9_437_184.0 * 0.1
        + 2_097_152.0 * 0.05
        + 5120.0 * 0.05)
        * 0.1;
    assert!(close(p1.e_snn_pj, want1), "{} vs {want1}", p1.e_snn_pj);
}

#[test]
fn table_one_constants() {
    assert_eq!((E_MAC_PJ, E_AC_PJ), (3.2, 0.1));
    assert_eq!(EnergyModel::INT32.e_mac, E_MAC_PJ);
    assert_eq!(EnergyModel::INT32.convention, Convention::Strict);
    assert_eq!(
        estimate(&all_spiking(), &uniform(0.1, 1)).energy_unit,
        "pJ per image"
    );
}

#[test]
fn input_density_pricing_by_hand() {
    // FC1(4,3) IF, FC2(3,2) logits, T = 10, measured input SA 0.5 and 0.25:
    // E_ANN = (12 + 6)·3.2 = 57.6 pJ; E_SNN = (12·0.5 + 6·0.25)·0.1·10 = 7.5 pJ; EE = 7.68.
    let net = Chain::new(s(4, 1, 1))
        .fc("FC1", 4, 3, LIF)
        .fc("FC2", 3, 2, Activation::None)
        .net;
    let sa: HashMap<(String, u32), f64> = [
        (("FC1".to_string(), 1), 0.5),
        (("FC2".to_string(), 1), 0.25),
    ]
    .into_iter()
    .collect();
    let e = price_by_input_density(&net, &sa, 10, EnergyModel::INT32);
    assert!(close(e.e_ann_pj, 57.6));
    assert!(close(e.e_snn_pj, 7.5), "{}", e.e_snn_pj);
    assert!(close(e.ee.unwrap(), 7.68));
    // An unmeasured layer counts SA = 1; a ReLU layer is MAC once whatever is given.
    let net = Chain::new(s(4, 1, 1))
        .fc("FC1", 4, 3, Activation::Relu)
        .fc("FC2", 3, 2, LIF)
        .net;
    let e = price_by_input_density(&net, &HashMap::new(), 10, EnergyModel::INT32);
    // Strict: FC2 (LIF) is fed FC1's real values: 6 MACs at each of 10 steps.
    assert!(
        close(e.e_snn_pj, 12.0 * 3.2 + 6.0 * 3.2 * 10.0),
        "{}",
        e.e_snn_pj
    );
}
