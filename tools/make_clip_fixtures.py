"""Zero-shot classification fixtures for crates/vlsm/tests/it/zero_shot_parity.rs (dev only).

1. tests/fixtures/clip/tiny: a tiny random transformers `CLIPModel` (CLIP's 49408-token vocabulary,
   8-wide text tower, 16-wide ViT at 32 px, every weight perturbed, logit_scale 2.0) saved with
   config.json, model.safetensors and preprocessor_config.json (no tokenizer files: vlsm falls
   back to the CLIP BPE file), and clip/reference.safetensors with the prompts' input ids, the
   images' pixel values, text/image embeddings and `logits_per_image`.
2. tests/fixtures/biomedclip/zero_shot.safetensors: open_clip's `CLIP.forward` on the existing
   tiny BiomedCLIP (tools/make_biomedclip_fixtures.py) for its reference pixel values and four of
   its prompts: `logit_scale.exp() * image_features @ text_features.T`.

Run: /work/pyenv/venv/bin/python tools/make_clip_fixtures.py
"""
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OUT = ROOT / "tests/fixtures/clip"
TEMPLATE = "a photo of a {}."
LABELS = ["polyp", "normal colon mucosa", "a breast tumour in ultrasound", "Café 🩺"]
IMAGES = ["kvasir_75x50.png", "busi_60x45.png", "clinicdb_64.png"]


def load_module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m  # timm's register_model looks its module up here
    spec.loader.exec_module(m)
    return m


def clip_fixture():
    cs = load_module("make_clipseg_fixtures")
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=12,
    )
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.logit_scale.fill_(2.0)
    if OUT.exists():
        shutil.rmtree(OUT)
    d = OUT / "tiny"
    model.save_pretrained(d, safe_serialization=True)
    # The PIL processor (transformers 5 also has a torchvision one, which rounds differently).
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    proc = cls(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(d)
    for extra in d.iterdir():
        if extra.name not in ("config.json", "model.safetensors", "preprocessor_config.json"):
            extra.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        tok = cs.load_fast(*cs.write_vocab_files(str(SHARED), tmp))
    prompts = [TEMPLATE.format(l) for l in LABELS]
    enc = tok(prompts, padding=True, return_tensors="pt")
    imgs = [Image.open(ROOT / "tests/fixtures/clipseg/images" / n).convert("RGB") for n in IMAGES]
    pv = proc(images=imgs, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pv)
        text = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        image = model.get_image_features(pixel_values=pv)
    text = getattr(text, "pooler_output", text)
    image = getattr(image, "pooler_output", image)
    ref = {"input_ids": enc["input_ids"].to(torch.int64), "attention_mask": enc["attention_mask"].to(torch.int64),
           "pixel_values": pv, "text_embeds": text, "image_embeds": image,
           "logits_per_image": out.logits_per_image}
    save_file({k: v.contiguous() for k, v in ref.items()}, OUT / "reference.safetensors")
    (OUT / "cases.json").write_text(json.dumps({
        "transformers": transformers.__version__, "torch": torch.__version__, "template": TEMPLATE,
        "labels": LABELS, "images": IMAGES}, ensure_ascii=False, indent=1))
    print("clip: logits_per_image", out.logits_per_image)


def biomedclip_zero_shot():
    bm = load_module("make_biomedclip_fixtures")
    bm.register_tiny_vit()
    import open_clip
    cases = json.loads((bm.OUT / "cases.json").read_text())
    ref = load_file(bm.OUT / "reference.safetensors")
    keep = [i for i, p in enumerate(cases["prompts"]) if p.strip()]
    cwd = os.getcwd()
    os.chdir(bm.MODEL)  # hf_model_name "bert" resolves here
    try:
        model = open_clip.create_model(f"local-dir:{bm.MODEL}").eval()
    finally:
        os.chdir(cwd)
    with torch.no_grad():
        out = model(ref["pixel_values"], ref["input_ids"][keep])
        if isinstance(out, dict):
            img, txt, scale = out["image_features"], out["text_features"], out["logit_scale"]
        else:
            img, txt, scale = out[:3]
        logits = scale * img @ txt.T
    save_file({"logits_per_image": logits.contiguous(), "prompt_index": torch.tensor(keep, dtype=torch.int64)},
              bm.OUT / "zero_shot.safetensors")
    print("biomedclip: logit_scale", float(scale), "logits", logits)


if __name__ == "__main__":
    clip_fixture()
    biomedclip_zero_shot()
