//! Issue 11.7: Poisson and dropout noise is drawn per image from (seed, image index, step),
//! so results depend on the seed alone — not on the batch size, nor on which other T are
//! evaluated.

use candle_core::{Device, Tensor};
use rand::Rng;
use snnc::backend::candle::encode::{dropout_mask, poisson, poisson_step, SeededRng};
use snnc::backend::candle::event::PathPolicy;
use snnc::backend::candle::model::{rng_for, ForwardOptions, Model};
use snnc::backend::candle::netbuild::NetBuilder;
use snnc::data::Split;
use snnc::ir::{Activation, NeuronKind, NeuronSpec, Reset, Shape};
use snnc::train::conversion::{evaluate_snn, Simulator, SplitImages};
use snnc::train::driver;

type R = Result<(), Box<dyn std::error::Error>>;

fn lif() -> Activation {
    Activation::Spiking(NeuronSpec {
        kind: NeuronKind::Lif,
        leak: 0.9,
        threshold: 0.5,
        reset: Reset::Subtract,
    })
}

fn if_neuron() -> Activation {
    Activation::Spiking(NeuronSpec {
        kind: NeuronKind::If,
        leak: 1.0,
        threshold: 1.0,
        reset: Reset::Subtract,
    })
}

fn images(n: usize, seed: u64) -> Split {
    let mut rng = rng_for(seed, 99);
    Split {
        images: (0..n * 16).map(|_| rng.0.random::<f32>()).collect(),
        labels: (0..n).map(|i| (i % 3) as u8).collect(),
    }
}

#[test]
fn keyed_poisson_is_independent_of_batch_and_t() -> R {
    let dev = Device::Cpu;
    let split = images(5, 1);
    let all = Tensor::from_vec(split.images.clone(), (5, 16), &dev)?;
    let mut rng = rng_for(3, 4);
    rng.set_images(0..5);
    // [T = 6, 5, 16]
    let long = poisson(&all, 6, &mut rng)?.to_vec3::<f32>()?;
    // Images 3 and 4 alone, for 2 steps, in a fresh stream of the same seed.
    let tail = Tensor::from_vec(split.images[3 * 16..].to_vec(), (2, 16), &dev)?;
    let mut rng = rng_for(3, 4);
    rng.set_images([3, 4]);
    let short = poisson(&tail, 2, &mut rng)?.to_vec3::<f32>()?;
    for t in 0..2 {
        for b in 0..2 {
            assert_eq!(short[t][b], long[t][3 + b], "step {t}, image {}", 3 + b);
        }
    }
    // The step-by-step draw of step 4 is step 4 of the batched draw.
    let step = poisson_step(&all, 4, &mut rng_with(3, 4, 0..5))?.to_vec2::<f32>()?;
    assert_eq!(step, long[4]);
    // Another seed gives other spikes; the rate is the pixel (1 pixel, 4000 steps).
    let one = Tensor::from_vec(vec![0.25f32], (1, 1), &dev)?;
    let s = poisson(&one, 4000, &mut rng_with(3, 4, [0]))?;
    let rate = s.sum_all()?.to_scalar::<f32>()? / 4000.0;
    assert!((rate - 0.25).abs() < 0.03, "rate {rate}");
    let other = poisson(&all, 6, &mut rng_with(4, 4, 0..5))?.to_vec3::<f32>()?;
    assert_ne!(other, long);
    // A batch with the wrong number of keys is an error, not a panic.
    assert!(poisson(&all, 2, &mut rng_with(3, 4, [0, 1])).is_err());
    Ok(())
}

fn rng_with(seed: u64, stream: u64, idx: impl IntoIterator<Item = usize>) -> SeededRng {
    let mut r = rng_for(seed, stream);
    r.set_images(idx);
    r
}

#[test]
fn keyed_dropout_masks_are_per_image_and_per_site() -> R {
    let dev = Device::Cpu;
    let p = 0.5;
    let mut a = rng_with(7, 2, 0..4);
    let m4 = dropout_mask(&[4, 50], p, &mut a, &dev)?.to_vec2::<f32>()?;
    let second_site = dropout_mask(&[4, 50], p, &mut a, &dev)?.to_vec2::<f32>()?;
    let m1 = dropout_mask(&[1, 50], p, &mut rng_with(7, 2, [2]), &dev)?.to_vec2::<f32>()?;
    assert_eq!(m1[0], m4[2], "image 2's mask does not depend on its batch");
    assert_ne!(
        second_site[2], m4[2],
        "two dropout sites draw different masks"
    );
    assert_ne!(m4[0], m4[1], "two images draw different masks");
    for v in m4.iter().flatten() {
        assert!(*v == 0.0 || *v == 2.0, "inverted dropout value {v}");
    }
    Ok(())
}

#[test]
fn evaluation_does_not_depend_on_the_batch_size() -> R {
    let dev = Device::Cpu;
    let net = NetBuilder::new("n", Shape::new(1, 4, 4), 6)
        .fc("FC1", 16, 12, lif())
        .fc("FC2", 12, 3, Activation::None)
        .build();
    let model = Model::new(&net, &dev, 5)?;
    let test = images(40, 2);
    let opts = ForwardOptions::snn(6, false);
    let a = driver::evaluate(&model, &test, [1, 4, 4], opts, 7, 11)?;
    let b = driver::evaluate(&model, &test, [1, 4, 4], opts, 32, 11)?;
    assert_eq!(a.accuracy, b.accuracy);
    assert!((a.loss - b.loss).abs() < 1e-6, "{} vs {}", a.loss, b.loss);
    assert_eq!(a.activity.len(), b.activity.len());
    // Spike counts: rate × neurons × steps × images, the same integer at both batch sizes
    // (the rates are f32 averages summed in a different order: counts agree to rounding).
    for (x, y) in a.activity.iter().zip(&b.activity) {
        assert_eq!((&x.layer, x.step), (&y.layer, y.step));
        let neurons = if x.layer == "Input" { 16.0 } else { 12.0 };
        let (cx, cy) = (
            x.spike_rate * neurons * 6.0 * 40.0,
            y.spike_rate * neurons * 6.0 * 40.0,
        );
        assert!(
            (cx - cx.round()).abs() < 1e-2 && cx.round() == cy.round(),
            "{cx} vs {cy}"
        );
        assert!(cx > 0.0, "{x:?}");
    }
    assert_eq!(a.max_input, b.max_input);
    // Another seed draws other spikes.
    let c = driver::evaluate(&model, &test, [1, 4, 4], opts, 7, 12)?;
    assert_ne!(c.activity, a.activity);
    Ok(())
}

#[test]
fn conversion_accuracy_at_t_does_not_depend_on_other_t() -> R {
    let dev = Device::Cpu;
    let net = NetBuilder::new("n", Shape::new(1, 4, 4), 16)
        .fc("FC1", 16, 12, if_neuron())
        .fc("FC2", 12, 3, Activation::None)
        .build();
    let model = Model::new(&net, &dev, 5)?;
    let test = images(30, 3);
    let data = SplitImages::new(&test, [1, 4, 4]);
    let sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let only = evaluate_snn(&sim, &data, &[8], 7, 4, false)?;
    let many = evaluate_snn(&sim, &data, &[4, 8, 16], 32, 4, false)?;
    let at8 = many
        .results
        .iter()
        .find(|r| r.timesteps == 8)
        .ok_or("no T = 8")?;
    let r = &only.results[0];
    assert_eq!(r.timesteps, 8);
    assert_eq!(r.test_accuracy, at8.test_accuracy);
    assert_eq!(r.activity, at8.activity);
    assert_eq!(r.input_activity, at8.input_activity);
    assert!(
        r.activity.iter().any(|a| a.spike_rate > 0.0),
        "{:?}",
        r.activity
    );
    Ok(())
}
