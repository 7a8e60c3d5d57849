//! snnc: a compiler for spiking neural networks written the way papers print them.
//!
//! The folders are the pipeline (see `docs/architecture.md`):
//! `syntax` (grammar glue, AST, spans) → `ir` (graph, builder) → `passes` (one pass per
//! file) → `analysis` (cost and energy side tables) → `backend::candle` (lowering, neurons,
//! encoders, classifiers) → `train` (agd, conversion, stdp); `data` (datasets); `cli`.

pub mod analysis;
pub mod backend;
pub mod cli;
pub mod data;
pub mod ir;
pub mod passes;
pub mod syntax;
pub mod train;
