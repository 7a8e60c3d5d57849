//! The front end: the pest grammar's glue, the typed AST, spans.

pub mod span;
