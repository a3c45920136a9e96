"""Non-square zero-shot fixtures for crates/vlsm/tests/it/zero_shot_parity.rs (dev only).

Each family's own classification transform on images whose sides differ (300x200, 199x333,
345x200; the crop margins 16/21/23 px at 32 and 32/43/46 px at 64 make transformers' floor and
torchvision's half-to-even offsets disagree on some of them), from the image file to the
probabilities:
  - CLIP (tests/fixtures/clip/tiny): transformers' PIL `CLIPImageProcessor` from the directory's
    preprocessor_config.json (shortest edge, bicubic, center crop), `CLIPModel` logits, softmax;
    prompts = the input ids already in clip/reference.safetensors.
  - BiomedCLIP (tests/fixtures/biomedclip/tiny): open_clip's `create_model_and_transforms`
    evaluation transform (torchvision Resize(64, bicubic) on the PIL image, CenterCrop(64),
    ToTensor, Normalize), `CLIP.forward` logits, softmax; prompts = biomedclip/zero_shot.safetensors'.
Writes tests/fixtures/zero_shot/{*.png, reference.safetensors, cases.json}.

Run: /work/pyenv/venv/bin/python tools/make_zero_shot_nonsquare_fixtures.py
"""
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FX = ROOT / "tests/fixtures"
OUT = FX / "zero_shot"
SIZES = [(300, 200), (199, 333), (345, 200)]  # (width, height)


def load_module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m  # timm's register_model looks its module up here
    spec.loader.exec_module(m)
    return m


def image(w, h, seed):
    """Smooth colour fields, a bright disc off-centre and stripes near the borders, so that the
    crop offset and the resampling both show in the pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < (min(w, h) / 5) ** 2) * 90.0
    stripes = ((x.astype(int) // 3 + y.astype(int) // 4) % 2) * 50.0 * ((x < 25) | (x > w - 25) | (y < 20) | (y > h - 20))
    r = 128 + 100 * np.sin(x / 17.0 + seed) + disc - stripes
    g = 90 + 80 * np.cos(y / 23.0) + 40 * np.sin((x + y) / 31.0) + stripes
    b = 60 + 0.4 * x - 0.2 * y + disc / 2
    return Image.fromarray(np.clip(np.stack([r, g, b], -1), 0, 255).round().astype(np.uint8))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (w, h) in enumerate(SIZES):
        n = f"nonsquare_{w}x{h}.png"
        image(w, h, i + 1).save(OUT / n)
        names.append(n)
    imgs = [Image.open(OUT / n).convert("RGB") for n in names]
    ref = {}

    # CLIP: the PIL processor as saved in the model directory.
    cdir = FX / "clip/tiny"
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    proc = cls.from_pretrained(cdir)
    model = transformers.CLIPModel.from_pretrained(cdir).eval()
    cref = load_file(FX / "clip/reference.safetensors")
    pv = proc(images=imgs, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=cref["input_ids"], attention_mask=cref["attention_mask"], pixel_values=pv)
    ref["clip.pixel_values"] = pv
    ref["clip.logits_per_image"] = out.logits_per_image
    ref["clip.probs"] = out.logits_per_image.softmax(-1)

    # BiomedCLIP: open_clip's own evaluation transform.
    bm = load_module("make_biomedclip_fixtures")
    bm.register_tiny_vit()
    import open_clip
    cwd = os.getcwd()
    os.chdir(bm.MODEL)  # hf_model_name "bert" resolves here
    try:
        bmodel, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{bm.MODEL}")
    finally:
        os.chdir(cwd)
    bmodel.eval()
    z = load_file(bm.OUT / "zero_shot.safetensors")
    bref = load_file(bm.OUT / "reference.safetensors")
    ids = bref["input_ids"][z["prompt_index"]]
    bpv = torch.stack([preprocess(im) for im in imgs])
    with torch.no_grad():
        o = bmodel(bpv, ids)
        img_f, txt_f, scale = (o["image_features"], o["text_features"], o["logit_scale"]) if isinstance(o, dict) else o[:3]
        logits = scale * img_f @ txt_f.T
    ref["biomedclip.pixel_values"] = bpv
    ref["biomedclip.logits_per_image"] = logits
    ref["biomedclip.probs"] = logits.softmax(-1)
    save_file({k: v.contiguous().float() for k, v in ref.items()}, OUT / "reference.safetensors")
    (OUT / "cases.json").write_text(json.dumps({
        "transformers": transformers.__version__, "open_clip": open_clip.__version__, "torch": torch.__version__,
        "clip_processor": cls.__name__, "biomedclip_transform": str(preprocess), "images": names}, indent=1) + "\n")
    print(preprocess)
    print("clip probs", ref["clip.probs"], "\nbiomedclip probs", ref["biomedclip.probs"])


if __name__ == "__main__":
    main()
