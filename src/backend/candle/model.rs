//! (owned by the runtime engineer; placeholder)
