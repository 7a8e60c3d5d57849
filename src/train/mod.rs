//! Training: one driver (`driver`: data, epochs, checkpoints, resume, reports, progress)
//! and training methods as plugins (`method`: the trait and the registry; `agd`, `ann`,
//! `conversion` implement it). Every method trains the same executable model
//! (`backend::candle::model`) and differs in how weights and thresholds are obtained.
//! `checkpoint` owns every name in a checkpoint; `defaults` every default setting; `error`
//! the runtime errors and their exit statuses.

pub mod agd;
pub mod ann;
pub mod checkpoint;
pub mod conversion;
pub mod defaults;
pub mod driver;
pub mod error;
pub mod memory;
pub mod method;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod raster;
pub mod records;
pub mod report;
pub mod stdp;
pub mod validate;

pub use driver::{TrainConfig, TrainError};
