#!/usr/bin/env python3
"""snnTorch side of the snnc speed bench: one Fashion-MNIST convnet, trained and run.

Network (the same as networks/fashion-mnist/agd/convnet.snn):
    input 1x28x28; Conv1(1,32,3x3/1) LIF; Pool(2x2/2); Conv2(32,64,3x3/1) LIF; Pool(2x2/2);
    FC1(3136,256) LIF; FC2(256,10)
no bias, padding 1, average pooling, LIF leak 0.99 threshold 1.0 reset by subtraction,
Poisson input, T = 10, batch 32, Adam lr 1e-3, softmax cross-entropy on FC2's output summed
over the T steps, surrogate gradient gamma * max(0, 1 - |V - v| / v) with gamma = 0.3 (the
paper's Eq. 4; snnTorch has no gamma-scaled triangular surrogate, so it is written here as a
torch.autograd.Function).

Prints one JSON line:
    {"framework":"snntorch","train_images_per_s":..,"infer_images_per_s":..,"max_rss_mb":..}
(plus a few descriptive keys). Reads Debian's gzip IDX files with gzip + numpy.
"""
import argparse
import gzip
import json
import os
import resource
import struct
import time

import numpy as np
import snntorch as snn
import torch
from torch import nn


def read_idx(path, magic, ndims):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    found = struct.unpack(">I", data[:4])[0]
    if found != magic:
        raise SystemExit(f"{path}: bad magic {found:#x}, expected {magic:#x}")
    dims = struct.unpack(">" + "I" * ndims, data[4 : 4 + 4 * ndims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims)
    if body.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: expected {int(np.prod(dims))} data bytes, found {body.size}")
    return body.reshape(dims)


def load_split(data_dir, prefix, limit):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"), 2051, 3)
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"), 2049, 1)
    images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


class LinearSurrogate(torch.autograd.Function):
    """Heaviside forward; gamma * max(0, 1 - |x| / v) backward, x = V - v (snnTorch's shift)."""

    gamma = 0.3
    threshold = 1.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        v = LinearSurrogate.threshold
        return grad * LinearSurrogate.gamma * torch.clamp(1.0 - x.abs() / v, min=0.0)


def linear_surrogate():
    def inner(x):
        return LinearSurrogate.apply(x)

    return inner


class ConvNet(nn.Module):
    def __init__(self, beta=0.99, threshold=1.0):
        super().__init__()
        lif = dict(beta=beta, threshold=threshold, reset_mechanism="subtract",
                   spike_grad=linear_surrogate())
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train-images", type=int, default=1600,
                    help="images trained on (the first N; batches of --batch)")
    ap.add_argument("--infer-images", type=int, default=1600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--timesteps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr, ytr = load_split(args.data_dir, "train", args.train_images)
    xte, yte = load_split(args.data_dir, "t10k", args.infer_images)

    net = ConvNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    # Train: one pass over the first N images (a full epoch of --train-limit N in snnc terms).
    net.train()
    n_train = 0
    losses = []
    t0 = time.perf_counter()
    for i in range(0, len(xtr), args.batch):
        x, y = xtr[i : i + args.batch], ytr[i : i + args.batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x, args.timesteps), y)
        loss.backward()
        opt.step()
        n_train += len(y)
        losses.append(loss.item())
    train_s = time.perf_counter() - t0

    net.eval()
    n_infer = correct = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(xte), args.batch):
            x, y = xte[i : i + args.batch], yte[i : i + args.batch]
            correct += (net(x, args.timesteps).argmax(1) == y).sum().item()
            n_infer += len(y)
    infer_s = time.perf_counter() - t0

    print(json.dumps({
        "framework": "snntorch",
        "train_images_per_s": round(n_train / train_s, 2),
        "infer_images_per_s": round(n_infer / infer_s, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "train_images": n_train,
        "infer_images": n_infer,
        "batch": args.batch,
        "timesteps": args.timesteps,
        "threads": args.threads,
        "first_loss": round(losses[0], 4) if losses else None,
        "last_loss": round(losses[-1], 4) if losses else None,
        "test_accuracy": round(correct / max(n_infer, 1), 4),
        "torch": torch.__version__,
        "snntorch": snn.__version__,
    }))


if __name__ == "__main__":
    main()
