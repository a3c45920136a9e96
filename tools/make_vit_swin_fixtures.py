#!/usr/bin/env python3
"""Write the ViT and Swin parity fixtures under tests/fixtures/{vit,swin}/ (dev-only; tests never
run this).

    python tools/make_vit_swin_fixtures.py [--out tests/fixtures]

Deterministic (torch.manual_seed), no network: every config is built in code.

Parameters are re-drawn so nothing is trivially zero (HF zero-initialises Swin's bias tables):
LayerNorm weights 1+0.2N, LayerNorm biases 0.1N, other biases 0.05N, embeddings / tokens /
relative-position tables 0.5N, weights N/sqrt(fan_in).

Weights are saved with save_pretrained (transformers 5 writes the hub's legacy key names, e.g.
vit.encoder.layer.0.attention.attention.query.weight); the .bin models are those same tensors
written with torch.save, as older hub checkpoints are.

vit/
  tiny_cls/    ViTForImageClassification: hidden 32, 3 layers, 4 heads, intermediate 64, image 32,
               patch 8 (4x4 grid), 5 labels named in id2label, model.safetensors.
  tiny_model/  ViTModel with pooler (tanh): hidden 24, 2 layers, 3 heads, intermediate 48,
               gelu_new, layer_norm_eps 1e-6, image 24, patch 6, qkv_bias, pytorch_model.bin.
swin/
  tiny_cls/    SwinForImageClassification: embed 8, depths [2,2,2,2], heads [1,2,2,4], window 4,
               patch 2, image 64, mlp_ratio 2, 4 labels, model.safetensors.
  tiny_model/  SwinModel (avg pooler), use_absolute_embeddings, embed 8, mlp_ratio 2, depths [1,2,1,2],
               heads [2,2,4,4], window 3, patch 4, image 96, pytorch_model.bin.

reference.safetensors (per directory), tensors "<case>.<name>"; cases.json lists
  {"name", "model_dir", "kind": "cls"|"model", "height", "width", "batch"}:
  pixel_values [B,3,H,W] (N(0,1)), and
  ViT:  hidden_states [L+1,B,T,D] (index 0 = embeddings), last_hidden_state (after layernorm),
        pooler_output (model), logits (cls). Non-trained sizes use interpolate_pos_encoding=True.
  Swin: stage{i} [B,C_i,H_i,W_i] for i in 0..4: each stage's output before patch merging
        (reshaped_hidden_states[1:] with output_hidden_states_before_downsampling=True),
        last_hidden_state [B,L,C] (after layernorm), pooler_output [B,C], logits (cls).
        Cases ending in "_always" pass always_partition=True (SwinBackbone's windowing).
        Each case runs on a freshly loaded model: HF's SwinLayer.set_shift_and_window_size
        mutates the layer, so one model object would carry one input's windows to the next.
"""

import argparse
import copy
import json
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    SwinConfig,
    SwinForImageClassification,
    SwinModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                v = 1 + 0.2 * n
            elif "norm" in name and name.endswith("bias"):
                v = 0.1 * n
            elif name.endswith("bias"):
                v = 0.05 * n
            elif p.dim() <= 2 and ("token" in name or "embeddings" in name or "bias_table" in name):
                v = 0.5 * n
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                v = n / fan_in ** 0.5
            p.copy_(v)


def save(model, d, bin_format):
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    if bin_format:
        sd = load_file(os.path.join(d, "model.safetensors"))
        torch.save({k: v.contiguous() for k, v in sd.items()}, os.path.join(d, "pytorch_model.bin"))
        os.remove(os.path.join(d, "model.safetensors"))


def load_fresh(cls, d):
    return cls.from_pretrained(d).eval()


def vit_models(out):
    torch.manual_seed(0)
    labels = ["polyp", "normal mucosa", "benign", "malignant", "ulcer"]
    c1 = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                   image_size=32, patch_size=8, num_labels=5,
                   id2label={i: l for i, l in enumerate(labels)}, label2id={l: i for i, l in enumerate(labels)})
    m1 = ViTForImageClassification(c1)
    randomise(m1, 1)
    save(m1, os.path.join(out, "tiny_cls"), False)
    c2 = ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                   image_size=24, patch_size=6, hidden_act="gelu_new", layer_norm_eps=1e-6)
    m2 = ViTModel(c2, add_pooling_layer=True)
    randomise(m2, 2)
    save(m2, os.path.join(out, "tiny_model"), True)
    return [
        ("cls_32", "tiny_cls", ViTForImageClassification, 32, 32, 2),
        ("cls_48x40", "tiny_cls", ViTForImageClassification, 48, 40, 2),
        ("cls_20x57", "tiny_cls", ViTForImageClassification, 20, 57, 1),
        ("model_24", "tiny_model", ViTModel, 24, 24, 1),
        ("model_36x30", "tiny_model", ViTModel, 36, 30, 2),
    ]


def swin_models(out):
    torch.manual_seed(0)
    c1 = SwinConfig(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=4, patch_size=2,
                    image_size=64, mlp_ratio=2.0, num_labels=4,
                    id2label={0: "kvasir", 1: "clinicdb", 2: "busi", 3: "other"},
                    label2id={"kvasir": 0, "clinicdb": 1, "busi": 2, "other": 3})
    m1 = SwinForImageClassification(c1)
    randomise(m1, 3)
    save(m1, os.path.join(out, "tiny_cls"), False)
    c2 = SwinConfig(embed_dim=8, depths=[1, 2, 1, 2], num_heads=[2, 2, 4, 4], window_size=3, patch_size=4, mlp_ratio=2.0,
                    image_size=96, use_absolute_embeddings=True)
    m2 = SwinModel(c2)
    randomise(m2, 4)
    save(m2, os.path.join(out, "tiny_model"), True)
    return [
        # trained size: stage 4 is 4x4 == window, so no shift there
        ("cls_64", "tiny_cls", SwinForImageClassification, 64, 64, 2),
        # 69x90: patch padding (69 -> 70), window padding and odd-size merging at every stage
        ("cls_69x90", "tiny_cls", SwinForImageClassification, 69, 90, 2),
        ("model_96", "tiny_model", SwinModel, 96, 96, 1),
        # 100x120: interpolated absolute embeddings, padding, shift in every stage
        ("model_100x120", "tiny_model", SwinModel, 100, 120, 2),
        # always_partition=True (SwinBackbone): stage maps 10x13, 5x7, 3x4, 2x2 all padded to
        # whole 3x3 windows and shifted, even the 2x2 one
        ("model_40x52_always", "tiny_model", SwinModel, 40, 52, 1),
    ]


def run_vit(out):
    cases = vit_models(out)
    ref, meta = {}, []
    g = torch.Generator().manual_seed(10)
    for name, d, cls, h, w, b in cases:
        m = load_fresh(cls, os.path.join(out, d))
        pv = torch.randn(b, 3, h, w, generator=g)
        with torch.no_grad():
            o = m(pv, interpolate_pos_encoding=True, output_hidden_states=True)
        ref[f"{name}.pixel_values"] = pv
        ref[f"{name}.hidden_states"] = torch.stack(o.hidden_states)
        if cls is ViTModel:
            ref[f"{name}.last_hidden_state"] = o.last_hidden_state
            ref[f"{name}.pooler_output"] = o.pooler_output
            kind = "model"
        else:
            base = m.vit(pv, interpolate_pos_encoding=True)
            ref[f"{name}.last_hidden_state"] = base.last_hidden_state
            ref[f"{name}.logits"] = o.logits
            kind = "cls"
        meta.append({"name": name, "model_dir": d, "kind": kind, "height": h, "width": w, "batch": b})
    return ref, meta


def run_swin(out):
    cases = swin_models(out)
    ref, meta = {}, []
    g = torch.Generator().manual_seed(20)
    for name, d, cls, h, w, b in cases:
        m = load_fresh(cls, os.path.join(out, d))
        base = m.swin if cls is SwinForImageClassification else m
        pv = torch.randn(b, 3, h, w, generator=g)
        interp = cls is SwinModel
        ap = name.endswith("_always")
        with torch.no_grad():
            feats = copy.deepcopy(base)(pv, interpolate_pos_encoding=interp, output_hidden_states=True,
                                        output_hidden_states_before_downsampling=True, always_partition=ap)
            o = m(pv, interpolate_pos_encoding=interp, always_partition=ap)
            bo = base(pv, interpolate_pos_encoding=interp, always_partition=ap)
        ref[f"{name}.pixel_values"] = pv
        for i, t in enumerate(feats.reshaped_hidden_states[1:]):
            ref[f"{name}.stage{i}"] = t
        ref[f"{name}.last_hidden_state"] = bo.last_hidden_state
        ref[f"{name}.pooler_output"] = bo.pooler_output
        kind = "model"
        if cls is SwinForImageClassification:
            ref[f"{name}.logits"] = o.logits
            kind = "cls"
        meta.append({"name": name, "model_dir": d, "kind": kind, "height": h, "width": w, "batch": b,
                     "always_partition": ap})
    return ref, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    a = ap.parse_args()
    import transformers
    for sub, fn in [("vit", run_vit), ("swin", run_swin)]:
        out = os.path.join(a.out, sub)
        ref, meta = fn(out)
        save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(out, "reference.safetensors"))
        with open(os.path.join(out, "cases.json"), "w") as f:
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": meta}, f, indent=1)
        print(sub, "cases:", [c["name"] for c in meta])


if __name__ == "__main__":
    main()
