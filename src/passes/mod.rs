//! The pass pipeline (placeholder until the front end lands).
