"""Shared pieces of the Python sides of the speed bench (snntorch_fmnist.py, spikingjelly_fmnist.py).

Owner: bench/. What both peers must do identically lives here, so that the two programs differ
only in the framework that builds and runs the network:
- the data: the first N images of Debian's gzip IDX Fashion-MNIST files, scaled to [0, 1];
- the surrogate spike: Heaviside forward with Θ(0) = 1 (snnc's `v >= θ`), backward the paper's
  Eq. 4, γ·max(0, 1 − |v − θ|/θ) with γ = 0.3, θ = 1;
- the loops: one pass of Adam (lr 1e-3) over the training images in order, softmax
  cross-entropy on the output summed over T, then inference on the test images;
- the JSON line printed at the end (the fields bench/run.sh reads).
"""
import argparse
import gzip
import json
import os
import resource
import struct
import time

import numpy as np
import torch
from torch import nn

GAMMA = 0.3
THRESHOLD = 1.0
LEAK = 0.99


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
    """The first `limit` images of a split: x [N, 1, 28, 28] float32 in [0, 1], y [N] int64."""
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"), 2051, 3)
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"), 2049, 1)
    images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


class TriangleSurrogate(torch.autograd.Function):
    """Spike of the shifted membrane x = v − θ: forward Θ(x) with Θ(0) = 1 (snnc fires at
    v >= θ); backward γ·max(0, 1 − |x|/θ) (the paper's Eq. 4, linear/triangle, γ = 0.3)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * GAMMA * torch.clamp(1.0 - x.abs() / THRESHOLD, min=0.0)


def triangle_surrogate(x):
    """A plain callable for the frameworks' `spike_grad` / `surrogate_function` arguments."""
    return TriangleSurrogate.apply(x)


def parse_args(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train-images", type=int, default=3200,
                    help="images trained on (the first N; batches of --batch)")
    ap.add_argument("--infer-images", type=int, default=1000,
                    help="test images run for inference and accuracy (the first N)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--timesteps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    # Threads and the seed are set before the caller builds its network, so that its initial
    # weights depend on --seed only.
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return args


def run(framework, net, forward, args, versions, reset=lambda: None):
    """Trains `net` for one pass over the first --train-images images, then evaluates it on the
    first --infer-images test images, and prints the JSON line. `forward(x, T)` maps a batch
    [B, 1, 28, 28] to logits [B, 10] (summed over T); `reset()` clears the network's state
    before each batch (SpikingJelly's stateful neurons)."""
    xtr, ytr = load_split(args.data_dir, "train", args.train_images)
    xte, yte = load_split(args.data_dir, "t10k", args.infer_images)

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    net.train()
    n_train = 0
    losses = []
    t0 = time.perf_counter()
    for i in range(0, len(xtr), args.batch):
        x, y = xtr[i : i + args.batch], ytr[i : i + args.batch]
        reset()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x, args.timesteps), y)
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
            reset()
            correct += (forward(x, args.timesteps).argmax(1) == y).sum().item()
            n_infer += len(y)
    infer_s = time.perf_counter() - t0

    print(json.dumps({
        "framework": framework,
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
        **versions,
    }))
