"""Fixtures for crates/vlsm/tests/it/cris_parity.rs (dev only; tests never run Python).

Runs the reference CRIS code (github.com/DerrickWang005/CRIS.pytorch, not vendored here) on a
tiny random configuration. Check the repository out somewhere and point CRIS_REPO at it:

    git clone https://github.com/DerrickWang005/CRIS.pytorch /tmp/cris
    CRIS_REPO=/tmp/cris /work/pyenv/venv/bin/python tools/make_cris_fixtures.py

The model is the reference `CLIP` (ModifiedResNet + text transformer), `FPN`,
`TransformerDecoder` and `Projector`, composed as `model/segmenter.py` does, with medvlsm's
output step (bicubic, align_corners=True, to the input size) and the official loss
(BCE-with-logits against the mask resized, nearest, to the prediction).

Weights are rounded to float16 and saved like a DataParallel training checkpoint:
`torch.save({"state_dict": {"module." + k: v}})`, which vlsm must unwrap.

A second fixture, tests/fixtures/cris_words (for crates/vlsm/tests/it/cris_long_prompt.rs), checks
the prompt → ids path: CRIS's RefCOCO `word_len` 17, the real CLIP vocabulary (49 408 ids) with a
tiny text width, and real prompts, short and medvlsm-style long ones (more than 17 tokens),
tokenised by CRIS.pytorch's own `utils/dataset.py` `tokenize(p, 17, truncate=True)` (its
SimpleTokenizer with the repository's `bpe_simple_vocab_16e6.txt.gz`, the same file as
shared/vocab; needs `ftfy` and `regex`). Which fixtures to write: the arguments `cris`,
`cris_words` (default: both; the committed `cris` fixture predates `cris_words`, write only the
new one with `... make_cris_fixtures.py cris_words`).
"""
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/cris"


def _load(name):
    # The files directly: the package's __init__ pulls in training-only dependencies.
    import importlib.util
    path = Path(os.environ.get("CRIS_REPO", "/tmp/cris")) / "model" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cris_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CLIP = _load("clip").CLIP
_layers = _load("layers")
FPN, Projector, TransformerDecoder = _layers.FPN, _layers.Projector, _layers.TransformerDecoder

torch.manual_seed(0)
CFG = {
    "model_type": "cris",
    "backbone": {"embed_dim": 64, "image_resolution": 64, "vision_layers": [1, 2, 1, 1],
                 "vision_width": 8, "context_length": 16, "vocab_size": 100,
                 "transformer_width": 64, "transformer_heads": 1, "transformer_layers": 2},
    "word_len": 12, "fpn_in": [64, 128, 64], "fpn_out": [32, 64, 64], "vis_dim": 64,
    "word_dim": 64, "num_layers": 2, "num_head": 4, "dim_ffn": 48, "img_size": 96,
    "threshold": 0.35,
}
B = 3


class Cris(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        bb = c["backbone"]
        self.backbone = CLIP(bb["embed_dim"], bb["image_resolution"], tuple(bb["vision_layers"]),
                             bb["vision_width"], None, bb["context_length"], c["word_len"],
                             bb["vocab_size"], bb["transformer_width"], bb["transformer_heads"],
                             bb["transformer_layers"])
        self.neck = FPN(in_channels=c["fpn_in"], out_channels=c["fpn_out"])
        self.decoder = TransformerDecoder(num_layers=c["num_layers"], d_model=c["vis_dim"],
                                          nhead=c["num_head"], dim_ffn=c["dim_ffn"], dropout=0.2,
                                          return_intermediate=False)
        self.proj = Projector(c["word_dim"], c["vis_dim"] // 2, 3)
        self.img_size = c["img_size"]

    def forward(self, img, word, mask):
        out = {}
        pad_mask = torch.zeros_like(word).masked_fill_(word == 0, 1).bool()
        vis = self.backbone.encode_image(img)
        out["c3"], out["c4"], out["c5"] = vis
        word_feats, state = self.backbone.encode_text(word)
        out["word_feats"], out["state"] = word_feats, state
        fq = self.neck(vis, state)
        out["fq"] = fq
        b, c, h, w = fq.size()
        fq = self.decoder(fq, word_feats, pad_mask).reshape(b, c, h, w)
        out["decoded"] = fq
        pred = self.proj(fq, state)
        out["pred"] = pred
        out["logits"] = F.interpolate(pred, self.img_size, mode="bicubic", align_corners=True)
        target = F.interpolate(mask, pred.shape[-2:], mode="nearest")
        out["loss"] = F.binary_cross_entropy_with_logits(pred, target).reshape(1)
        return out


def randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
        # Round to float16 so the committed half-precision weights are exact.
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dtype == torch.float32:
                t.copy_(t.half().float())


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = Cris(CFG)
    randomize(model)
    model.eval()
    sd = {k: v for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    ckpt = {"state_dict": {"module." + k: (v.half() if v.is_floating_point() else v)
                           for k, v in sd.items()}, "epoch": 50}
    torch.save(ckpt, OUT / "cris.pth")
    (OUT / "config.json").write_text(json.dumps(CFG, indent=1))

    L, V = CFG["word_len"], CFG["backbone"]["vocab_size"]
    # CRIS's own tokenizer pads with 0 (masked in cross-attention); EOT is the largest id.
    word = torch.zeros(B, L, dtype=torch.long)
    for i, n in enumerate([5, L, 2]):
        word[i, :n] = torch.randint(1, V - 1, (n,))
        word[i, n - 1] = V - 1
    img = torch.randn(B, 3, CFG["img_size"], CFG["img_size"])
    mask = (torch.rand(B, 1, CFG["img_size"], CFG["img_size"]) > 0.6).float()
    with torch.no_grad():
        out = model(img, word, mask)
    ref = {"img": img, "ids": word, "mask": mask, **out}
    save_file({k: v.contiguous() for k, v in ref.items()}, OUT / "reference.safetensors")
    print({k: tuple(v.shape) for k, v in ref.items()})


OUT_WORDS = ROOT / "tests/fixtures/cris_words"
CFG_WORDS = {
    "model_type": "cris",
    "backbone": {"embed_dim": 16, "image_resolution": 64, "vision_layers": [1, 1, 1, 1],
                 "vision_width": 4, "context_length": 77, "vocab_size": 49408,
                 "transformer_width": 8, "transformer_heads": 2, "transformer_layers": 1},
    "word_len": 17, "fpn_in": [32, 64, 16], "fpn_out": [8, 8, 16], "vis_dim": 8,
    "word_dim": 16, "num_layers": 1, "num_head": 2, "dim_ffn": 16, "img_size": 64,
    "threshold": 0.35,
}
# Short, exactly word_len, one over, and medvlsm p6-p9-like prompts (more than 17 tokens,
# one beyond CLIP's 77).
LONG = ("one medium pink round polyp, located in bottom right of the image, which is an "
        "irregular shaped growth on the colon wall")
PROMPTS = [
    "polyp",
    "one small pink round polyp, located in bottom right of the image.",
    "one small light pink round polyp, located in bottom right of the image.",
    LONG,
    "two small red oval polyps, located in top left and center of the image, which are "
    "abnormal growths of tissue on the lining of the colon",
    " ".join([LONG] * 4),
]


def _cris_tokenize():
    """CRIS.pytorch's `utils/dataset.py` `tokenize`, imported with its data-loading-only
    dependencies (cv2, lmdb, pyarrow) stubbed when absent."""
    import importlib
    import importlib.util
    import types
    for name in ("cv2", "lmdb", "pyarrow"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    utils = Path(os.environ.get("CRIS_REPO", "/tmp/cris")) / "utils"
    spec = importlib.util.spec_from_file_location(
        "cris_utils", utils / "__init__.py", submodule_search_locations=[str(utils)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["cris_utils"] = pkg
    spec.loader.exec_module(pkg)
    return importlib.import_module("cris_utils.dataset")


def main_words():
    torch.manual_seed(1)
    OUT_WORDS.mkdir(parents=True, exist_ok=True)
    model = Cris(CFG_WORDS)
    randomize(model)
    model.eval()
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous()
          for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, OUT_WORDS / "model.safetensors")
    (OUT_WORDS / "config.json").write_text(json.dumps(CFG_WORDS, indent=1))

    ds = _cris_tokenize()
    tok = ds._tokenizer
    L = CFG_WORDS["word_len"]
    word = ds.tokenize(PROMPTS, L, True)
    n = len(PROMPTS)
    # Length of [sot] + bpe + [eot] before CRIS cuts it to word_len.
    lengths = [len(tok.encode(p)) + 2 for p in PROMPTS]
    (OUT_WORDS / "prompts.json").write_text(json.dumps(
        [{"prompt": p, "tokens": k} for p, k in zip(PROMPTS, lengths)], indent=1))
    img1 = torch.randn(1, 3, CFG_WORDS["img_size"], CFG_WORDS["img_size"])
    img = img1.expand(n, -1, -1, -1).contiguous()
    mask = torch.zeros(n, 1, CFG_WORDS["img_size"], CFG_WORDS["img_size"])
    with torch.no_grad():
        out = model(img, word, mask)
    ref = {"img": img1, "ids": word, "word_feats": out["word_feats"], "state": out["state"],
           "logits": out["logits"]}
    save_file({k: v.contiguous() for k, v in ref.items()}, OUT_WORDS / "reference.safetensors")
    print("tokens:", lengths)
    print({k: tuple(v.shape) for k, v in ref.items()})


if __name__ == "__main__":
    which = sys.argv[1:] or ["cris", "cris_words"]
    for w in which:
        {"cris": main, "cris_words": main_words}[w]()
