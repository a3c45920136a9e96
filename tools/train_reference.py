"""Reference numbers for crates/vlsm/src/train: losses, AdamW + clip_grad_norm_, ReduceLROnPlateau.

Writes crates/vlsm/tests/fixtures/train_reference.json. Run with the project venv:
    /work/pyenv/venv/bin/python tools/train_reference.py
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F

torch.manual_seed(0)
out = {}

# Losses: MONAI DiceLoss(sigmoid=True) per sample, mean; BCE with logits.
try:
    from monai.losses import DiceLoss
    dice_fn = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
except ImportError:  # same formula by hand
    dice_fn = None

logits = torch.randn(3, 4, 5) * 3
target = (torch.rand(3, 4, 5) > 0.6).float()
target[2] = 0  # an empty target
if dice_fn is not None:
    dice = dice_fn(logits[:, None], target[:, None]).item()
else:
    p = logits.sigmoid().flatten(1)
    g = target.flatten(1)
    dice = (1 - (2 * (p * g).sum(1) + 1e-5) / (p.sum(1) + g.sum(1) + 1e-5)).mean().item()
bce = F.binary_cross_entropy_with_logits(logits, target).item()
out["loss"] = {
    "shape": list(logits.shape),
    "logits": logits.flatten().tolist(),
    "target": target.flatten().tolist(),
    "dice": dice,
    "bce": bce,
    "monai": dice_fn is not None,
}

# AdamW + clipping on logits = (X @ W + b).view(2, 2, 3), loss = Dice + 0.2 BCE.
X = torch.randn(2, 4)
W = torch.randn(4, 6, requires_grad=True)
b = torch.randn(6, requires_grad=True)
Y = (torch.rand(2, 2, 3) > 0.5).float()
init = {"X": X.flatten().tolist(), "W": W.detach().flatten().tolist(), "b": b.detach().flatten().tolist(),
        "Y": Y.flatten().tolist()}
opt = torch.optim.AdamW([W, b], lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
steps = []
for i in range(6):
    opt.zero_grad()
    lg = (X @ W + b).view(2, 2, 3)
    p = lg.sigmoid().flatten(1)
    g = Y.flatten(1)
    d = (1 - (2 * (p * g).sum(1) + 1e-5) / (p.sum(1) + g.sum(1) + 1e-5)).mean()
    loss = d + 0.2 * F.binary_cross_entropy_with_logits(lg, Y)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([W, b], max_norm=0.1).item()
    opt.step()
    steps.append({"loss": loss.item(), "norm": norm, "W": W.detach().flatten().tolist(),
                  "b": b.detach().flatten().tolist()})
out["adamw"] = {"init": init, "lr": 0.05, "weight_decay": 0.01, "max_norm": 0.1, "steps": steps}

# ReduceLROnPlateau trace.
p = torch.nn.Parameter(torch.zeros(1))
o = torch.optim.SGD([p], lr=1.0)
s = torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", factor=0.1, patience=2, threshold=1e-4,
                                               cooldown=1, min_lr=1e-3)
losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
lrs = []
for l in losses:
    s.step(l)
    lrs.append(o.param_groups[0]["lr"])
out["plateau"] = {"losses": losses, "lrs": lrs}

path = Path(__file__).resolve().parent.parent / "crates/vlsm/tests/fixtures/train_reference.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print("wrote", path, "plateau lrs", lrs)
