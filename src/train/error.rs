//! Runtime errors of training and evaluation, with codes like the front end's
//! (`snnc::train::<what>`, `snnc::data::<what>`, `snnc::runtime::<what>`), and the one place
//! that maps them onto exit statuses ([`TrainError::exit_code`]): 1 for errors in the input
//! (the network, a data set that does not fit it, a diverging run, a checkpoint that does not
//! fit), 2 for usage and I/O.

use miette::Diagnostic;

/// Why a training or evaluation run stopped.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum TrainError {
    /// A tensor operation failed (a shape or size the IR did not rule out, a batch too
    /// large for memory).
    #[error("{0}")]
    #[diagnostic(code(snnc::runtime::tensor))]
    Candle(#[from] candle_core::Error),
    /// Balancing or simulating the converted network failed.
    #[error("{0}")]
    #[diagnostic(code(snnc::train::conversion))]
    Conversion(candle_core::Error),
    #[error("{0}")]
    #[diagnostic(code(snnc::train::io))]
    Io(#[from] std::io::Error),
    /// The data set could not be read or its specification is wrong.
    #[error("{0}")]
    #[diagnostic(code(snnc::data::load))]
    Data(#[from] crate::data::DataError),
    /// The data set does not fit the network (image shape, classes) or is empty.
    #[error("{0}")]
    #[diagnostic(code(snnc::data::mismatch))]
    DataMismatch(String),
    /// The network cannot be lowered or run by this runtime.
    #[error("cannot lower `{network}`: {reason}")]
    #[diagnostic(code(snnc::runtime::lower))]
    Lower { network: String, reason: String },
    /// A setting is out of range or contradicts another.
    #[error("{0}")]
    #[diagnostic(code(snnc::train::config))]
    Config(String),
    /// No training method of that name.
    #[error("unknown training method `{0}`")]
    #[diagnostic(
        code(snnc::train::method),
        help("the methods are: {}", crate::train::method::names().join(", "))
    )]
    UnknownMethod(String),
    /// A checkpoint cannot be resumed or evaluated.
    #[error("{0}")]
    #[diagnostic(code(snnc::train::checkpoint))]
    Checkpoint(String),
    /// A setting of the network file differs from the one the checkpoint was trained with
    /// (`checkpoint::NetRecord`): classifier, input coding, surrogate γ, a neuron's kind,
    /// leak or reset.
    #[error("{path} was trained with {setting} = {checkpoint}, but the network file says {file}")]
    #[diagnostic(
        code(snnc::train::checkpoint_mismatch),
        help("the weights fit only the setting they were trained with: write {checkpoint} back into the network file, or start a new run")
    )]
    CheckpointMismatch {
        /// The checkpoint file.
        path: String,
        setting: String,
        checkpoint: String,
        file: String,
    },
    /// Ctrl-C (SIGINT) during training: the current batch was finished and, with an output
    /// folder, a checkpoint of the position written (issue 11.10). Exit status 130.
    #[error("interrupted in epoch {epoch} after batch {batch}; {saved}")]
    #[diagnostic(code(snnc::train::interrupted))]
    Interrupted {
        /// The epoch running (from 1).
        epoch: usize,
        /// Batches of that epoch done.
        batch: usize,
        /// What was saved, in words.
        saved: String,
        /// The output folder holding the checkpoint (none: nothing written).
        out: Option<std::path::PathBuf>,
    },
    #[error("parameter `{0}` received no gradient: it does not influence the loss")]
    #[diagnostic(code(snnc::train::no_gradient))]
    NoGradient(String),
    /// One step would need more memory than is available (issue 11.4).
    #[error("a {what} step would need about {need} of memory for a batch of {batch} over {timesteps} time steps, but only {available} is available")]
    #[diagnostic(
        code(snnc::train::memory),
        help("lower --batch or --timesteps (the step's memory grows with their product)")
    )]
    Memory {
        what: String,
        need: String,
        available: String,
        batch: usize,
        timesteps: usize,
    },
    /// The loss, the weights after an update, or the test loss stopped being finite.
    #[error("{what} at epoch {epoch}, batch {batch}; training stopped. {kept} Try a lower learning rate.")]
    #[diagnostic(code(snnc::train::non_finite))]
    NonFinite {
        epoch: usize,
        batch: usize,
        /// The training loss of that batch (the test loss at evaluation).
        loss: f32,
        /// What became non-finite.
        what: String,
        /// The last good checkpoint, named, or that there is none.
        kept: String,
    },
    /// The STDP method failed (a checkpoint of another run, a network without STDP layers…).
    #[error("{0}")]
    #[diagnostic(code(snnc::train::stdp))]
    Stdp(String),
    /// A layer that ANN-to-SNN conversion cannot simulate rate-correctly
    /// (`passes::convertible`).
    #[error("`{layer}` max-pools spike maps, which ANN-to-SNN conversion cannot simulate rate-correctly (a max-pooled spike map fires when any input fires, above the ANN's maximum at every T); use `AvgPool` or `Pool`")]
    #[diagnostic(code(snnc::conversion::max_pool))]
    NotConvertible {
        /// The refused layer.
        layer: String,
    },
}

impl TrainError {
    /// The process exit status for this error: 1 errors in the input, 2 usage or I/O, 130
    /// an interrupt (128 + SIGINT, as shells report it).
    pub fn exit_code(&self) -> u8 {
        match self {
            TrainError::Interrupted { .. } => 130,
            TrainError::Candle(_)
            | TrainError::Io(_)
            | TrainError::Data(_)
            | TrainError::Config(_)
            | TrainError::UnknownMethod(_) => 2,
            TrainError::Conversion(_)
            | TrainError::DataMismatch(_)
            | TrainError::Lower { .. }
            | TrainError::Checkpoint(_)
            | TrainError::CheckpointMismatch { .. }
            | TrainError::NoGradient(_)
            | TrainError::Memory { .. }
            | TrainError::NonFinite { .. }
            | TrainError::NotConvertible { .. }
            | TrainError::Stdp(_) => 1,
        }
    }
}
