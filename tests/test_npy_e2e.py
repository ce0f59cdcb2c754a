#!/usr/bin/env python3
"""test_npy_e2e.py - the Python side of tests/test_npy_e2e.sh (issue 14's "done when").

  test_npy_e2e.py make DIR
      writes DIR/{train,test}_{x,y}.npy: 3x12x12 uint8 images stored channels last (n, 12, 12, 3)
      and int64 labels of 7 classes. Learnable but not perfectly: each class has its own pattern
      (half the pixels of a row and of a column, in colours that depend on the class, brighter),
      over uniform noise, and 15% of the labels are drawn at random. Standard library
      only (any python3), the .npy files written byte by byte as np.save writes them.
  test_npy_e2e.py torch RUN_DIR DIR
      (Debian's /usr/bin/python3 with python3-torch) loads RUN_DIR/model.safetensors into the
      PyTorch module equivalent to nets/examples/small-cnn.net with strict=True, normalises
      DIR's test split with the mean and std of RUN_DIR/metrics.jsonl's config record, and
      prints "test accuracy A (correct C of N) loss L" for the shell test to compare with
      Tempo's evaluation.
"""
import json
import os
import random
import struct
import sys

H = W = 12
C = 3
CLASSES = 7


def npy_bytes(descr, shape, payload):
    """The bytes np.save writes: magic, version 1.0, a header padded to 64, the data."""
    shp = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shp)
    total = (10 + len(d) + 1 + 63) // 64 * 64
    hdr = d + " " * (total - 10 - len(d) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode("ascii") + payload


def make_split(rng, n):
    xs, ys = bytearray(), []
    for _ in range(n):
        k = rng.randrange(CLASSES)
        row, col, ch = (2 * k) % H, (5 * k + 3) % W, k % C
        img = [[[rng.randrange(0, 150) for _ in range(C)] for _ in range(W)] for _ in range(H)]
        for t in range(W):
            if rng.random() < 0.5:
                img[row][t][ch] = min(255, img[row][t][ch] + 60 + rng.randrange(0, 60))  # the class's row
        for t in range(H):
            if rng.random() < 0.5:
                img[t][col][(ch + 1) % C] = min(255, img[t][col][(ch + 1) % C] + 60 + rng.randrange(0, 60))
        if rng.random() < 0.15:
            k = rng.randrange(CLASSES)  # label noise: no model gets every image right
        ys.append(k)
        for y in range(H):
            for x in range(W):
                xs.extend(img[y][x])  # (h, w, c): channels last
    return bytes(xs), struct.pack("<%dq" % n, *ys)


def make(out):
    rng = random.Random(1234)
    for split, n in (("train", 1120), ("test", 350)):
        x, y = make_split(rng, n)
        with open(os.path.join(out, split + "_x.npy"), "wb") as f:
            f.write(npy_bytes("|u1", (n, H, W, C), x))
        with open(os.path.join(out, split + "_y.npy"), "wb") as f:
            f.write(npy_bytes("<i8", (n,), y))


def torch_check(run, data):
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))
    from st import read_safetensors  # noqa: E402  (python3-torch 1.13 has no safetensors package)

    def conv(cin, cout, k, stride=1, bias=True):
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)

    class Block(nn.Module):
        """x + block(x) (or + shortcut(x)), then ReLU."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = conv(cin, cout, 3, stride, False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = conv(cout, cout, 3, 1, False), nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(conv(cin, cout, 1, stride, False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))

    class SmallCNN(nn.Module):
        """nets/examples/small-cnn.net as a PyTorch module (docs/network-format.md)."""

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(conv(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
            self.block1 = Block(16, 16, 1)
            self.block2 = Block(16, 32, 2)
            self.fc1 = nn.Linear(32 * 3 * 3, 64)
            self.head = nn.Linear(64, CLASSES)

        def forward(self, x):
            x = self.block2(self.block1(self.features(x)))
            return self.head(F.relu(self.fc1(torch.flatten(x, 1))))

    cfg = json.loads(open(os.path.join(run, "metrics.jsonl")).readline())
    assert cfg["type"] == "config" and cfg["dataset"] == "npy", cfg
    model = SmallCNN()
    weights = {k: torch.from_numpy(v.copy()) for k, v in read_safetensors(os.path.join(run, "model.safetensors")).items()}
    model.load_state_dict(weights, strict=True)
    model.eval()
    x = torch.from_numpy(np.load(os.path.join(data, "test_x.npy")))
    y = torch.from_numpy(np.load(os.path.join(data, "test_y.npy")))
    if cfg["layout"] == "nhwc":
        x = x.permute(0, 3, 1, 2)
    x = x.float() / 255 if cfg["pixels"] == "uint8" else x.float()
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, -1, 1, 1)
    x = ((x - mean) / std).contiguous()
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        correct = int((logits.argmax(1) == y).sum())
    print("test accuracy %.6f (correct %d of %d) loss %.6f" % (correct / len(y), correct, len(y), loss))
    top2 = logits.topk(2, 1).values
    print("smallest top-1 margin %.3g (a tie could flip an image between implementations)" %
          float((top2[:, 0] - top2[:, 1]).min()))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "torch":
        torch_check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
