#!/usr/bin/env python3
"""SpikingJelly side of the snnc speed bench: one Fashion-MNIST convnet, trained and run.

Network (the same as networks/fashion-mnist/agd/convnet.snn and bench/snntorch_fmnist.py):
    input 1x28x28; Conv1(1,32,3x3/1) LIF; Pool(2x2/2); Conv2(32,64,3x3/1) LIF; Pool(2x2/2);
    FC1(3136,256) LIF; FC2(256,10)
no bias, padding 1, average pooling, Poisson input, T = 10, batch 32, Adam lr 1e-3, softmax
cross-entropy on FC2's output summed over the T steps.

SpikingJelly's multi-step mode (step_mode='m'): every layer sees the whole [T, B, ...] sequence;
the stateless layers (layer.Conv2d, AvgPool2d, Flatten, Linear) fold T into the batch, the
neurons scan over T. Torch backend on the CPU (no cupy, no triton).

Neurons: neuron.LIFNode(tau=100, decay_input=False, v_reset=None, detach_reset=True), i.e.
    v[t] = (1 − 1/τ)·u[t−1] + x[t] = 0.99·u[t−1] + x[t],  s[t] = Θ(v[t] − 1),  u[t] = v[t] − s[t]
with the reset detached in backward: exactly snnc's LIF (src/backend/candle/neuron.rs). The
surrogate is the triangle γ·max(0, 1 − |v − θ|/θ), γ = 0.3, θ = 1 (fmnist_common.py; not one of
SpikingJelly's built-in surrogates, so its reference Torch path runs the scan).

Prints one JSON line with the fields of snntorch_fmnist.py (fmnist_common.run), framework
"spikingjelly".
"""
import importlib.metadata

import torch
from torch import nn

from spikingjelly.activation_based import functional, layer, neuron

from fmnist_common import LEAK, THRESHOLD, parse_args, run, triangle_surrogate


def lif():
    return neuron.LIFNode(
        tau=1.0 / (1.0 - LEAK),  # 1 − 1/τ = 0.99
        decay_input=False,
        v_threshold=THRESHOLD,
        v_reset=None,  # reset by subtraction
        surrogate_function=triangle_surrogate,
        detach_reset=True,
        step_mode="m",
    )


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        m = dict(step_mode="m")
        self.body = nn.Sequential(
            layer.Conv2d(1, 32, 3, stride=1, padding=1, bias=False, **m),
            lif(),
            layer.AvgPool2d(2, 2, **m),
            layer.Conv2d(32, 64, 3, stride=1, padding=1, bias=False, **m),
            lif(),
            layer.AvgPool2d(2, 2, **m),
            layer.Flatten(**m),
            layer.Linear(3136, 256, bias=False, **m),
            lif(),
            layer.Linear(256, 10, bias=False, **m),
        )

    def forward(self, x, timesteps):
        # Poisson input: a Bernoulli draw per pixel and step, [T, B, 1, 28, 28].
        x_seq = (torch.rand((timesteps, *x.shape), dtype=x.dtype) < x).to(x.dtype)
        return self.body(x_seq).sum(0)


def main():
    args = parse_args(__doc__.splitlines()[0])
    net = ConvNet()
    versions = {"spikingjelly": importlib.metadata.version("spikingjelly")}
    run("spikingjelly", net, net.forward, args, versions, reset=lambda: functional.reset_net(net))


if __name__ == "__main__":
    main()
