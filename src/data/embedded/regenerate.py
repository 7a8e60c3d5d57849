#!/usr/bin/env python3
"""Regenerates snnc's embedded Fashion-MNIST slice (src/data/embedded/fashion-*.gz).

Takes the first TRAIN (2,000) training and the first TEST (500) test images and labels from
the gzip IDX files of Debian's `dataset-fashion-mnist` package (or any directory given as
the first argument) and writes them as gzip IDX files with rewritten headers. The output is
deterministic (gzip mtime 0), so re-running it leaves the committed files unchanged.

    python3 src/data/embedded/regenerate.py [/usr/share/datasets/fashion-mnist]
"""
import gzip
import os
import struct
import sys
from collections import Counter

TRAIN, TEST = 2000, 500
SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
OUT = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with gzip.open(os.path.join(SRC, name + ".gz"), "rb") as f:
        return f.read()


def write(name, data):
    with open(os.path.join(OUT, "fashion-" + name + ".gz"), "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(data)


for prefix, n in (("train", TRAIN), ("t10k", TEST)):
    images = read(f"{prefix}-images-idx3-ubyte")
    labels = read(f"{prefix}-labels-idx1-ubyte")
    magic, count, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 2051 and count >= n, (magic, count)
    lmagic, lcount = struct.unpack(">II", labels[:8])
    assert lmagic == 2049 and lcount == count, (lmagic, lcount)
    write(f"{prefix}-images-idx3-ubyte",
          struct.pack(">IIII", 2051, n, rows, cols) + images[16:16 + n * rows * cols])
    write(f"{prefix}-labels-idx1-ubyte", struct.pack(">II", 2049, n) + labels[8:8 + n])
    print(prefix, n, "images; per class:", sorted(Counter(labels[8:8 + n]).items()))
