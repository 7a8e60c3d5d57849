#!/usr/bin/env python3
"""Checks that the SpikingJelly neuron of spikingjelly_fmnist.py runs snnc's LIF.

snnc (src/backend/candle/neuron.rs), per neuron with u[−1] = 0:
    v[t] = 0.99·u[t−1] + x[t],  s[t] = Θ(v[t] − 1) with Θ(0) = 1,  u[t] = v[t] − s[t]
and BPTT with the reset detached: dL/dv[t] = g[t]·0.3·max(0, 1 − |v[t] − 1|) + 0.99·dL/dv[t+1],
dL/dx[t] = dL/dv[t]. This script writes that recurrence out by hand, runs the LIFNode of the
bench on the same random currents (some exactly at the threshold), and asserts equal spikes and
input gradients within 1e-5 relative. Run: bench/.venv/bin/python bench/check_spikingjelly_lif.py
"""
import sys

import torch

from fmnist_common import GAMMA, LEAK, THRESHOLD
from spikingjelly_fmnist import lif


def reference(x, g):
    u = torch.zeros_like(x[0])
    vs, ss = [], []
    for t in range(x.shape[0]):
        v = LEAK * u + x[t]
        s = (v >= THRESHOLD).to(x.dtype)
        u = v - THRESHOLD * s
        vs.append(v)
        ss.append(s)
    gx = torch.zeros_like(x)
    carry = torch.zeros_like(x[0])
    for t in reversed(range(x.shape[0])):
        carry = g[t] * GAMMA * torch.clamp(1 - (vs[t] - THRESHOLD).abs() / THRESHOLD, min=0) + LEAK * carry
        gx[t] = carry
    return torch.stack(ss), gx


def main():
    torch.manual_seed(1)
    x = torch.randn(10, 4, 64) * 0.8 + 0.4
    x[0, 0, :8] = THRESHOLD  # v = θ exactly at t = 0: must fire (Θ(0) = 1)
    g = torch.randn(10, 4, 64)
    s_ref, gx_ref = reference(x, g)

    xs = x.clone().requires_grad_()
    s = lif()(xs)
    (s * g).sum().backward()

    assert torch.equal(s.detach(), s_ref), "spikes differ from snnc's LIF"
    assert s_ref[0, 0, :8].eq(1).all(), "a neuron exactly at threshold must fire"
    rate = s_ref.mean().item()
    assert 0.05 < rate < 0.95, f"degenerate test input (spike rate {rate})"
    err = ((xs.grad - gx_ref).abs() / (gx_ref.abs() + 1e-6)).max().item()
    assert torch.allclose(xs.grad, gx_ref, rtol=1e-5, atol=1e-6), f"input gradients differ (max rel {err})"
    print(f"ok: spikes equal (rate {rate:.3f}), input gradients equal within rtol 1e-5, atol 1e-6")
    return 0


if __name__ == "__main__":
    sys.exit(main())
