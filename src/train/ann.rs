//! The ANN baseline: the network's topology with every spiking layer as ReLU, T = 1 and the
//! input directly coded (`Mode::Ann`), trained by the driver's gradient loop. Its energy is
//! the ANN's own (E_SNN = E_ANN, EE = 1).

use crate::backend::candle::model::ForwardOptions;
use crate::train::method::TrainingMethod;

/// The ANN baseline method.
#[derive(Debug, Clone, Copy)]
pub struct Ann;

impl TrainingMethod for Ann {
    fn name(&self) -> &'static str {
        "ann"
    }

    fn about(&self) -> &'static str {
        "the same topology with ReLU and T = 1"
    }

    fn forward_options(&self, _timesteps: usize, train: bool) -> ForwardOptions {
        ForwardOptions::ann(train)
    }

    fn training_timesteps(&self, _timesteps: usize) -> usize {
        1
    }

    fn as_dyn(&self) -> &dyn TrainingMethod {
        self
    }
}
