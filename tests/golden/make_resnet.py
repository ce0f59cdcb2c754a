#!/usr/bin/python3
"""make_resnet.py - golden fixture for the ResNet family (run with Debian's /usr/bin/python3, torch 1.13).

The model is the PyTorch twin's CIFAR ResNet (tools/peer_bench.py: 3x3 stem conv + BN + ReLU,
BasicBlock / Bottleneck with the stride on the 3x3 conv, option-B projection shortcuts,
global average pool, Linear head) in two small shapes registered as test-only variants:

  basic/  "resnet-test":       BasicBlock [1, 2], widths 4/8, stem 4, on 3x9x9 inputs, batch 4
  bneck/  "resnet-test-bneck": Bottleneck [1, 1], widths 2/4 (x4), stem 4, on 1x10x10, batch 3

Odd input sizes exercise padding and stride 2 on odd grids. BN affine parameters and running
statistics are perturbed away from their defaults so the test sees them. For each shape,
under its prefix: every state_dict tensor before any forward, the input x, labels,
"eval_logits" (eval mode, running statistics), then in train mode: logits, loss, every
gradient ("grad.<name>"), the running statistics after that forward ("after.<name>"), and
the losses of 5 SGD steps (lr 0.1, momentum 0.9, no weight decay) as "sgd_losses".
Writes tests/golden/resnet.safetensors. CI never runs this script."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import first_step, sgd_losses  # noqa: E402
from st import write_safetensors  # noqa: E402

NUM_CLASSES = 10


# ---- the twin (copied from tools/peer_bench.py, input channels as an argument) ----
def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def projection(cin, cout, stride):
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = projection(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = projection(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, blocks, widths, stem_width, chans=3):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(chans, stem_width), nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True))
        layers, cin = [], stem_width
        for s, (n, w) in enumerate(zip(blocks, widths)):
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                layers.append(block(cin, w, stride))
                cin = w * block.expansion
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, NUM_CLASSES)

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def make(prefix, model, x, y, out):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if ".bn" in name or "stem.1" in name or "shortcut.1" in name:
                if name.endswith(".weight"):
                    t.add_(0.2 * torch.randn_like(t))
                elif name.endswith(".bias") or name.endswith("running_mean"):
                    t.copy_(0.1 * torch.randn_like(t))
                elif name.endswith("running_var"):
                    t.copy_(1.0 + 0.3 * torch.rand_like(t))
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k, v in sd.items():
        out[prefix + k] = v
    model.eval()
    with torch.no_grad():
        out[prefix + "eval_logits"] = model(x).numpy()
    model.train()
    first_step(model, x, y, out, prefix)
    for k, v in model.state_dict().items():
        if "running" in k:
            out[prefix + "after." + k] = v.numpy().copy()
    # 5 SGD steps from the initial weights (the running statistics do not affect train-mode losses)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    out[prefix + "sgd_losses"] = losses = sgd_losses(model, x, y)
    print(prefix, "params", sum(p.numel() for p in model.parameters()), "losses", losses)


def main():
    torch.manual_seed(2024)
    out = {}
    make("basic/", ResNet(BasicBlock, [1, 2], [4, 8], 4, chans=3), torch.randn(4, 3, 9, 9),
         torch.randint(0, NUM_CLASSES, (4,)), out)
    make("bneck/", ResNet(Bottleneck, [1, 1], [2, 4], 4, chans=1), torch.randn(3, 1, 10, 10),
         torch.randint(0, NUM_CLASSES, (3,)), out)
    write_safetensors(os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet.safetensors"), out)


if __name__ == "__main__":
    main()
