//! AST → IR (placeholder until the front end lands).
