#!/usr/bin/python3
"""interop_mlp.py - the PyTorch side of the safetensors round trip (tests/test_owner.sh).

  interop_mlp.py eval W.safetensors DATA_DIR
      loads Tempo-exported weights into the PyTorch twin's MLP (strict state_dict names and
      shapes) and prints "test accuracy XX.XX% (loss L.LLLL)" on the Fashion-MNIST test split,
      normalised as Tempo does ((x/255 - 0.2860) / 0.3530), in the format of `tempo eval`.
  interop_mlp.py make OUT.safetensors DATA_DIR
      trains the twin for 200 SGD steps from torch.manual_seed(0) and writes its state_dict,
      then prints its test accuracy the same way, for Tempo to load with the same names.

Run with Debian's /usr/bin/python3 (python3-torch 1.13 has no safetensors package: st.py
reads and writes the format with numpy)."""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st import read_safetensors, write_safetensors  # noqa: E402

MEAN, STD = 0.2860, 0.3530


class MLP(nn.Module):
    """The twin of Tempo's `mlp` (../../shared/tools/peer_bench.py)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def load_split(data_dir, split):
    with gzip.open(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz")) as f:
        img = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz")) as f:
        lab = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    x = ((img.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(lab.astype(np.int64))


def evaluate(model, x, y):
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(y), 256):
            logits = model(x[i:i + 256])
            loss_sum += F.cross_entropy(logits, y[i:i + 256]).item() * len(logits)
            correct += (logits.argmax(1) == y[i:i + 256]).sum().item()
    return correct, loss_sum / len(y)


def report(model, data_dir):
    x, y = load_split(data_dir, "t10k")
    correct, loss = evaluate(model, x, y)
    print(f"test accuracy {100.0 * correct / len(y):.2f}% (loss {loss:.4f}) correct {correct}")


def main():
    torch.set_num_threads(2)
    if len(sys.argv) != 4 or sys.argv[1] not in ("eval", "make"):
        print(__doc__)
        return 2
    cmd, path, data_dir = sys.argv[1:]
    model = MLP()
    if cmd == "eval":
        tensors = read_safetensors(path)
        state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
        model.load_state_dict(state, strict=True)  # names and shapes must match the twin exactly
    else:
        torch.manual_seed(0)
        model = MLP()
        x, y = load_split(data_dir, "train")
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        for _ in range(200):
            idx = torch.randint(0, len(y), (64,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        write_safetensors(path, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
    report(model, data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
