//! (owned by the neuron/convolution engineer; placeholder)
