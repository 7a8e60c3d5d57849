#!/usr/bin/env python3
"""snnTorch side of the snnc speed bench: one Fashion-MNIST convnet, trained and run.

Network (the same as networks/fashion-mnist/agd/convnet.snn):
    input 1x28x28; Conv1(1,32,3x3/1) LIF; Pool(2x2/2); Conv2(32,64,3x3/1) LIF; Pool(2x2/2);
    FC1(3136,256) LIF; FC2(256,10)
no bias, padding 1, average pooling, LIF leak 0.99 threshold 1.0 reset by subtraction,
Poisson input, T = 10, batch 32, Adam lr 1e-3, softmax cross-entropy on FC2's output summed
over the T steps, surrogate gradient gamma * max(0, 1 - |V - v| / v) with gamma = 0.3 (the
paper's Eq. 4; snnTorch has no gamma-scaled triangular surrogate, so it is the
torch.autograd.Function of fmnist_common.py).

One difference from snnc remains: snnTorch's `Leaky` (default reset_delay=True) subtracts the
previous step's (detached) spike after the leak, mem[t] = 0.99·mem[t−1] + x[t] − s[t−1], where
snnc leaks the already-reset membrane, v[t] = 0.99·(v[t−1] − s[t−1]) + x[t]. The work per step
is the same.

Prints one JSON line (fmnist_common.run):
    {"framework":"snntorch","train_images_per_s":..,"infer_images_per_s":..,"test_accuracy":..,...}
Reads Debian's gzip IDX files with gzip + numpy.
"""
import snntorch as snn
import torch
from torch import nn

from fmnist_common import LEAK, THRESHOLD, parse_args, run, triangle_surrogate


class ConvNet(nn.Module):
    def __init__(self, beta=LEAK, threshold=THRESHOLD):
        super().__init__()
        lif = dict(beta=beta, threshold=threshold, reset_mechanism="subtract",
                   spike_grad=triangle_surrogate)
        self.conv1 = nn.Conv2d(1, 32, 3, stride=1, padding=1, bias=False)
        self.lif1 = snn.Leaky(**lif)
        self.pool1 = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=1, padding=1, bias=False)
        self.lif2 = snn.Leaky(**lif)
        self.pool2 = nn.AvgPool2d(2, 2)
        self.fc1 = nn.Linear(3136, 256, bias=False)
        self.lif3 = snn.Leaky(**lif)
        self.fc2 = nn.Linear(256, 10, bias=False)

    def forward(self, x, timesteps):
        m1 = self.lif1.init_leaky()
        m2 = self.lif2.init_leaky()
        m3 = self.lif3.init_leaky()
        logits = 0.0
        for _ in range(timesteps):
            spikes_in = (torch.rand_like(x) < x).to(x.dtype)  # Poisson (Bernoulli per step)
            s1, m1 = self.lif1(self.conv1(spikes_in), m1)
            s2, m2 = self.lif2(self.conv2(self.pool1(s1)), m2)
            s3, m3 = self.lif3(self.fc1(self.pool2(s2).flatten(1)), m3)
            logits = logits + self.fc2(s3)
        return logits


def main():
    args = parse_args(__doc__.splitlines()[0])
    net = ConvNet()
    run("snntorch", net, net.forward, args, {"snntorch": snn.__version__})


if __name__ == "__main__":
    main()
