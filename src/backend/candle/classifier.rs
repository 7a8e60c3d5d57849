//! (owned by the classifiers/encoders engineer; placeholder)
