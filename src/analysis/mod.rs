//! Cost and energy side tables (placeholder).
