//! Execution backends. `candle` lowers the IR onto candle tensors.

pub mod candle;
