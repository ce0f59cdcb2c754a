#!/usr/bin/python3
"""make_mlp.py - golden fixture for the MLP (run with Debian's /usr/bin/python3, torch 1.13).

The model is the PyTorch twin's MLP (fc1, fc2, fc3 with ReLU) on a small 1x6x6 input so the
fixture stays small. Writes tests/golden/mlp.safetensors with: every parameter, the input x,
labels, logits, loss, every gradient ("grad.<name>") of the first step, and the losses of 5
SGD steps (lr 0.1, momentum 0.9, no weight decay) as "sgd_losses". CI never runs this script."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import first_step, sgd_losses  # noqa: E402
from st import write_safetensors  # noqa: E402


class MLP(nn.Module):
    def __init__(self, inputs):
        super().__init__()
        self.fc1 = nn.Linear(inputs, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def main():
    torch.manual_seed(1234)
    model = MLP(36)
    x = torch.randn(8, 1, 6, 6)
    y = torch.randint(0, 10, (8,))
    out = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    first_step(model, x, y, out)
    out["sgd_losses"] = losses = sgd_losses(model, x, y)
    write_safetensors(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlp.safetensors"), out)
    print("losses", losses)


if __name__ == "__main__":
    main()
