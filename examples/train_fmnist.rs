//! Trains the Fashion-MNIST convnet (snnTorch's tutorial topology:
//! Conv1(1,12,5x5/1, pad=0) LIF – MaxPool(2x2/2) – Conv2(12,64,5x5/1, pad=0) LIF –
//! MaxPool(2x2/2) – FC1(1024,10)) with AGD, batch 32, T = 10, and prints training and
//! inference images/s. The network is built by hand, without the front end.
//!
//! `cargo run --release --example train_fmnist -- [TRAIN_LIMIT] [TEST_LIMIT] [EPOCHS]`

use candle_core::Device;
use snnc::backend::candle::model::Model;
use snnc::backend::candle::netbuild::NetBuilder;
use snnc::ir::{Activation, LayerKind, PoolKind, Shape};
use snnc::train::agd::{self, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let train_limit = args.first().copied().unwrap_or(2000);
    let test_limit = args.get(1).copied().unwrap_or(1000);
    let epochs = args.get(2).copied().unwrap_or(1);
    let b = NetBuilder::new("FMNIST", Shape::new(1, 28, 28), 10).settings(|s| {
        s.neuron.leak = 0.95;
    });
    let lif = b.lif();
    let mut net = b
        .conv("Conv1", 1, 12, 5, 1, lif)
        .pool(PoolKind::Max, 2, 2)
        .conv("Conv2", 12, 64, 5, 1, lif)
        .pool(PoolKind::Max, 2, 2)
        .fc("FC1", 1024, 10, Activation::None)
        .build();
    // pad = 0, as in the snnTorch tutorial: fix the builder's ⌊K/2⌋ and the shapes.
    for w in &mut net.weights {
        if let LayerKind::Conv { pad, .. } = &mut w.kind {
            *pad = 0;
        }
    }
    let fixed = [(12, 24), (12, 12), (64, 8), (64, 4)];
    let mut i = 0;
    for n in net.topo_order() {
        let node = &mut net.graph[n];
        if matches!(
            node.op,
            snnc::ir::Op::Conv { .. } | snnc::ir::Op::Pool { .. }
        ) {
            let (c, s) = fixed[i];
            node.out_shape = Some(Shape::new(c, s, s));
            i += 1;
        }
    }
    let data = snnc::data::load(
        &snnc::data::default_spec(),
        Some(train_limit),
        Some(test_limit),
    )?;
    let mut model = Model::new(&net, &Device::Cpu, 0)?;
    let cfg = TrainConfig {
        epochs,
        timesteps: 10,
        batch: 32,
        lr: 1e-3,
        progress: true,
        ..TrainConfig::default()
    };
    let r = agd::train(&mut model, &data, &cfg)?;
    for e in &r.epochs {
        println!(
            "epoch {}: loss {:.4} train acc {:.3} test acc {:.3}",
            e.epoch, e.loss, e.train_accuracy, e.test_accuracy
        );
    }
    println!(
        "training {:.1} images/s, inference {:.1} images/s",
        r.train_images_per_s, r.infer_images_per_s
    );
    for a in &r.activity {
        println!("  {}@{}: {:.4}", a.layer, a.step, a.spike_rate);
    }
    Ok(())
}
