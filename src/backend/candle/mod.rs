//! Lowering onto candle tensors: one file per layer type, the spiking neurons (a fused scan
//! over T with a hand-written backward), input encoders and classifiers, and `model`, the
//! executable network every training method shares.

pub mod alloc;
pub mod classifier;
pub mod conv;
pub mod encode;
pub mod event;
pub mod model;
pub mod netbuild;
pub mod neuron;
pub mod pool;
