"""golden.py - what every golden-fixture generator records (run with /usr/bin/python3, torch 1.13):
the first training step's input, labels, logits, loss and parameter gradients, and the losses of
5 SGD steps (lr 0.1, momentum 0.9, no weight decay) on the same batch."""
import numpy as np
import torch
import torch.nn.functional as F


def first_step(model, x, y, out, prefix=""):
    """One forward/backward in the model's current mode; adds x, labels, logits, loss, grad.<name>."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out[prefix + "x"] = x.numpy()
    out[prefix + "labels"] = y.numpy().astype(np.int32)
    out[prefix + "logits"] = logits.detach().numpy()
    out[prefix + "loss"] = np.array([loss.item()], dtype=np.float32)
    for k, p in model.named_parameters():
        out[prefix + "grad." + k] = p.grad.numpy().copy()


def sgd_losses(model, x, y):
    """Losses of 5 SGD steps from the model's current weights, as float32."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return np.array(losses, dtype=np.float32)
