#!/usr/bin/env python3
"""Time one training step (forward, backward, AdamW) of the built-in TextUNet architecture in
PyTorch, beside `vlsm bench train` in the same run. Dev-only.

    python tools/bench_train.py [--batch 8] [--size 160] [--threads 2] [--reps 5]
                                [--vlsm target/release/vlsm]

The PyTorch model mirrors crates/vlsm/src/models/textunet.rs: conv3x3 (no bias) → GroupNorm →
ReLU twice per level, channels 16-32-64-128-256, max-pool down, nearest up + skip concat, FiLM
(x·(1+γ)+β) at the bottleneck and after every up block, a 2-layer pre-norm transformer text
encoder (width 128, 4 heads, GELU MLP 256) with mean pooling, 1x1 head, BCE-with-logits loss.
"""
import argparse
import json
import os
import statistics
import subprocess
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--vlsm", default="target/release/vlsm")
    a = ap.parse_args()
    # vlsm runs before torch is imported and again after its timing, so the machine's drift
    # shows up on both sides of the comparison.
    run_vlsm(a, "before")
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ch = [16, 32, 64, 128, 256]
    d = 128

    def block(cin, cout):
        g = min(8, cout)
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(g, cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(g, cout), nn.ReLU())

    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(401, d)
            self.pos = nn.Parameter(torch.randn(77, d) * 0.02)
            layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.enc = nn.TransformerEncoder(layer, 2)
            self.ln = nn.LayerNorm(d)
            self.proj = nn.Linear(d, d)

        def forward(self, ids):
            h = self.tok(ids) + self.pos[: ids.shape[1]]
            return self.proj(self.ln(self.enc(h)).mean(1))

    class TextUNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = len(ch)
            self.text = Text()
            self.down = nn.ModuleList([block(3 if i == 0 else ch[i - 1], ch[i]) for i in range(n)])
            self.up = nn.ModuleList([block(ch[n - 1 - i] + ch[n - 2 - i], ch[n - 2 - i]) for i in range(n - 1)])
            film_ch = [ch[n - 1]] + [ch[n - 2 - i] for i in range(n - 1)]
            self.film = nn.ModuleList([nn.Linear(d, 2 * c) for c in film_ch])
            self.head = nn.Conv2d(ch[0], 1, 1)

        @staticmethod
        def apply_film(x, gb):
            g, b = gb.chunk(2, 1)
            return x * (1 + g[:, :, None, None]) + b[:, :, None, None]

        def forward(self, x, ids):
            t = self.text(ids)
            feats = []
            for i, blk in enumerate(self.down):
                if i > 0:
                    x = F.max_pool2d(x, 2)
                x = blk(x)
                feats.append(x)
            h = self.apply_film(feats[-1], self.film[0](t))
            for i, blk in enumerate(self.up):
                skip = feats[-2 - i]
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
                h = self.apply_film(blk(torch.cat([h, skip], 1)), self.film[i + 1](t))
            return self.head(h).squeeze(1)

    model = TextUNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = (torch.rand(a.batch, a.size, a.size) > 0.5).float()
    ids = torch.tensor([[0, 1 + i, 20, 0] for i in range(a.batch)])

    def step():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x, ids), y)
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    params = sum(p.numel() for p in model.parameters())
    print(f"pytorch {torch.__version__}: textunet ({params} params) @{a.size}px batch {a.batch} threads {a.threads}: "
          f"{med:.3f} s/step, {a.batch / med:.1f} images/s")
    run_vlsm(a, "after")


def run_vlsm(a, when):
    if a.vlsm and os.path.exists(a.vlsm):
        out = subprocess.run([a.vlsm, "--threads", str(a.threads), "bench", "train", "--batch", str(a.batch),
                              "--size", str(a.size), "--reps", str(a.reps), "--json"],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"vlsm ({when} pytorch): {r['median_s_per_step']:.3f} s/step, {r['images_per_s']:.1f} images/s "
              f"({r['params']} params)")


if __name__ == "__main__":
    main()
