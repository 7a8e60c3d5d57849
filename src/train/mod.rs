//! Training methods. Every method trains the same executable model
//! (`backend::candle::model`) and differs in how weights and thresholds are obtained.

pub mod agd;
pub mod checkpoint;
pub mod conversion;
pub mod optim;
pub mod report;
pub mod stdp;
