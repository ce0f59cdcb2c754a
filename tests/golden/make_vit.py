#!/usr/bin/python3
"""make_vit.py - golden fixture for the ViT family (run with Debian's /usr/bin/python3, torch 1.13).

The model is the PyTorch twin's ViT (tools/peer_bench.py: Conv2d patch embedding, cls token,
position embedding, pre-LayerNorm blocks with qkv-bias attention and a GELU MLP, final
LayerNorm, Linear head on the cls token) in the small "vit-test" shape: dim 16, depth 2,
heads 2, MLP 32, patch 4 on 3x16x16 inputs (17 tokens), batch 4. The LayerNorm affine
parameters and the cls token are perturbed away from their (1, 0, 0) defaults so that the
test sees them. Writes tests/golden/vit.safetensors with every parameter, the input x,
labels, logits, loss, every gradient ("grad.<name>") of the first step, and the losses of
5 SGD steps (lr 0.1, momentum 0.9, no weight decay, train mode) as "sgd_losses".
CI never runs this script."""
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


# ---- the twin (copied from tools/peer_bench.py, image/patch/chans as arguments) ----
class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return x


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, mlp_hidden, patch=4, image=32, chans=3):
        super().__init__()
        n_patches = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(chans, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, NUM_CLASSES)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def main():
    torch.manual_seed(4321)
    model = ViT(dim=16, depth=2, heads=2, mlp_hidden=32, patch=4, image=16, chans=3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.add_(0.1 * torch.randn_like(p))
            elif "norm" in name and name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif name == "cls_token":
                p.copy_(0.5 * torch.randn_like(p))
    model.train()
    x = torch.randn(4, 3, 16, 16)
    y = torch.randint(0, NUM_CLASSES, (4,))
    out = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    first_step(model, x, y, out)
    out["sgd_losses"] = losses = sgd_losses(model, x, y)
    print("params", sum(p.numel() for p in model.parameters()), "losses", losses)
    write_safetensors(os.path.join(os.path.dirname(os.path.abspath(__file__)), "vit.safetensors"), out)


if __name__ == "__main__":
    main()
