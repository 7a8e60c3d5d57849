//! AGD: surrogate-gradient BPTT through the spiking scan (Section IV), with the network's
//! classifier (softmax, or stochmax while training), Adam or SGD, a batch size, epochs and one
//! seed for everything random. The loop itself is the driver's (`train::driver::train`);
//! AGD runs the declared SNN (`Mode::Snn`) at T.

use crate::backend::candle::model::ForwardOptions;
use crate::train::method::TrainingMethod;

pub use crate::train::driver::OptimizerKind;

/// The AGD method.
#[derive(Debug, Clone, Copy)]
pub struct Agd;

impl TrainingMethod for Agd {
    fn name(&self) -> &'static str {
        "agd"
    }

    fn about(&self) -> &'static str {
        "surrogate gradients through time (the SNN itself)"
    }

    fn forward_options(&self, timesteps: usize, train: bool) -> ForwardOptions {
        ForwardOptions::snn(timesteps, train)
    }

    fn as_dyn(&self) -> &dyn TrainingMethod {
        self
    }
}
