//! Datasets (placeholder).
