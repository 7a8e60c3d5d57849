//! (owned by the classifiers/optimisers engineer; placeholder)
