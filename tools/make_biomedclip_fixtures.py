"""Fixtures for crates/vlsm/tests/it/biomedclip_parity.rs (dev only; tests never run Python).

Builds a tiny random BiomedCLIP in the open_clip layout of
microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224, offline:
  - the image tower is a timm ViT registered here under a local name (open_clip's TimmModel
    only takes a timm model name), with its dimensions also written to vision_cfg
    (width/layers/head_width/patch_size, which open_clip ignores for timm towers and vlsm reads);
  - the text tower's hf_model_name is a sub-directory holding a tiny BertConfig, which
    transformers' AutoConfig resolves locally (relative to the model directory).
Then a BiomedCLIPSeg reference: medvlsm's `_forward_vit` / `_forward_bert` + transformers'
CLIPSeg decoder, with a random decoder and with one taken from a tiny CLIPSeg checkpoint (-D).

Run: /work/pyenv/venv/bin/python tools/make_biomedclip_fixtures.py
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/biomedclip"
MODEL = OUT / "tiny"

IMG, PATCH, WIDTH, DEPTH, HEADS = 64, 16, 32, 12, 4
EMBED = 24
BERT = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
            pad_token_id=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
CONTEXT = 32
CLIPSEG_EXTRACT = [3, 6, 9]  # CIDAS config, which medvlsm reads
EXTRACT = [i + 1 for i in CLIPSEG_EXTRACT]  # the timm blocks that medvlsm actually takes
DECODER = dict(reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32,
               conditional_layer=0, use_complex_transposed_convolution=True)
PROMPTS = [
    "one small pink round polyp, located in right of the image",
    "polyp",
    "",
    "Café 🩺 lesion",
    " ".join(["a large red oval polyp which is a growth"] * 4),  # longer than the context
]

# A tiny uncased WordPiece vocabulary: specials, words, letters and continuations.
WORDS = ("the of in an is which located image right left top bottom small large one two pink red "
         "round oval polyp polyps lesion growth tissue skin cafe , . ; ! ? & - ( )").split()
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789")
# No duplicates: transformers keeps the last id of a repeated token, vlsm the first.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + LETTERS + ["##" + c for c in LETTERS]


def register_tiny_vit():
    from timm.models import register_model
    from timm.models.vision_transformer import _create_vision_transformer

    @register_model
    def vit_vlsm_tiny(pretrained=False, **kw):
        # vit_base_patch16_224's builder and defaults, tiny dimensions.
        kw.pop("pretrained_cfg", None)
        args = dict(img_size=IMG, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS)
        return _create_vision_transformer("vit_base_patch16_224", pretrained=False, **args, **kw)


def perturb(module, scale=0.05):
    """Random everything, LayerNorms included, so no parameter is left at an identity value."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(torch.randn_like(p) * scale)


def write_model_dir():
    if MODEL.exists():
        shutil.rmtree(MODEL)
    (MODEL / "bert").mkdir(parents=True)
    from transformers import BertConfig, BertTokenizerFast
    BertConfig(vocab_size=len(VOCAB), **BERT).save_pretrained(MODEL / "bert")
    (MODEL / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # transformers 5 takes the vocabulary as `vocab` (a path or a dict), not `vocab_file`.
    tok = BertTokenizerFast(vocab=str(MODEL / "vocab.txt"), do_lower_case=True,
                            model_max_length=CONTEXT)
    tok.save_pretrained(MODEL)
    cfg = {
        "model_cfg": {
            "embed_dim": EMBED,
            "vision_cfg": {"timm_model_name": "vit_vlsm_tiny", "timm_model_pretrained": False,
                           "timm_pool": "", "timm_proj": "linear", "image_size": IMG,
                           "width": WIDTH, "layers": DEPTH, "head_width": WIDTH // HEADS,
                           "patch_size": PATCH, "mlp_ratio": 4.0},
            "text_cfg": {"hf_model_name": "bert", "hf_tokenizer_name": "bert",
                         "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                         "context_length": CONTEXT},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    (MODEL / "open_clip_config.json").write_text(json.dumps(cfg, indent=1))
    return cfg, tok


def build_open_clip(cfg):
    import open_clip
    from open_clip.model import CustomTextCLIP
    mc = json.loads(json.dumps(cfg["model_cfg"]))
    mc["text_cfg"]["hf_model_pretrained"] = False  # random weights, nothing to download
    model = CustomTextCLIP(**mc)
    perturb(model)
    model.eval()
    torch.save(model.state_dict(), MODEL / "open_clip_pytorch_model.bin")
    # Reload through open_clip's own local-directory path, as a user would.
    loaded = open_clip.create_model(f"local-dir:{MODEL}")
    loaded.eval()
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    return loaded


def clipseg_decoder(seed):
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation
    torch.manual_seed(seed)
    c = CLIPSegConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, vocab_size=100, max_position_embeddings=16),
        vision_config=dict(hidden_size=WIDTH, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=IMG, patch_size=PATCH),
        projection_dim=EMBED, extract_layers=CLIPSEG_EXTRACT, **DECODER)
    m = CLIPSegForImageSegmentation(c)
    perturb(m.decoder)
    return m.eval()


def forward_vit(model, x):
    """medvlsm BiomedCLIPSeg._forward_vit."""
    vit = model.visual.trunk
    x = vit.patch_embed(x)
    x = vit._pos_embed(x)
    x = vit.norm_pre(x)
    hidden = []
    for block in vit.blocks:
        x = block(x)
        hidden.append(x)
    x = vit.norm(x)
    x = x[:, 0]
    x = vit.fc_norm(x)
    x = vit.head(x)
    return model.visual.head(x), hidden


def forward_bert(model, ids, mask):
    """medvlsm BiomedCLIPSeg._forward_bert (CLS pooling, MLP projection)."""
    bert = model.text
    out = bert.transformer(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return bert.proj(bert.pooler(out, mask)), out.hidden_states


def main():
    register_tiny_vit()
    os.chdir(MODEL.parent)
    cfg, tok = write_model_dir()
    os.chdir(MODEL)  # hf_model_name "bert" resolves here, as vlsm resolves it
    model = build_open_clip(cfg)

    import open_clip
    enc = tok(PROMPTS, max_length=CONTEXT, padding="max_length", truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert (ids == 1).sum() <= 3, "vocabulary not loaded"
    oc_ids = open_clip.tokenizer.HFTokenizer(str(MODEL), context_length=CONTEXT)(PROMPTS)
    assert torch.equal(oc_ids, ids), (oc_ids, ids)

    b = len(PROMPTS)
    pixel_values = torch.randn(b, 3, IMG, IMG)
    ref = {"input_ids": ids.to(torch.int64), "attention_mask": mask.to(torch.int64),
           "pixel_values": pixel_values}
    with torch.no_grad():
        img_feat, hidden = forward_vit(model, pixel_values)
        txt_feat, txt_hidden = forward_bert(model, ids, mask)
        # Cross-check against open_clip's own encoders.
        assert torch.allclose(img_feat, model.encode_image(pixel_values), atol=1e-6)
        assert torch.allclose(txt_feat, model.encode_text(ids), atol=1e-6)
        ref["vision.blocks"] = torch.stack(hidden)            # [depth, B, 1+N, W]
        ref["image_features"] = img_feat
        ref["text.hidden_states"] = torch.stack(txt_hidden)   # [layers+1, B, L, H]
        ref["text_features"] = txt_feat
        acts = [hidden[i + 1] for i in CLIPSEG_EXTRACT]  # medvlsm's off-by-one: blocks 4, 7, 10
        for name, seed in [("seg", 1), ("seg_d", 2)]:
            seg = clipseg_decoder(seed)
            logits = seg.decoder(acts, txt_feat).logits
            ref[f"{name}.logits"] = logits
            dec = {k: v.contiguous() for k, v in seg.state_dict().items()
                   if k.startswith("decoder.")}
            if name == "seg":
                save_file(dec, MODEL / "decoder.safetensors")
            else:
                # A whole (tiny) CLIPSeg checkpoint: -D takes its decoder.* tensors.
                full = {k: v.contiguous() for k, v in seg.state_dict().items()
                        if "position_ids" not in k}
                save_file(full, OUT / "clipseg_tiny.safetensors")
    (MODEL / "config.json").write_text(json.dumps(
        {"model_type": "biomedclipseg", "extract_layers": EXTRACT, **DECODER,
         "decoder_weights": "decoder.safetensors"}, indent=1))
    save_file({k: v.contiguous() for k, v in ref.items()}, OUT / "reference.safetensors")
    (OUT / "cases.json").write_text(json.dumps({
        "open_clip": open_clip.__version__, "torch": torch.__version__,
        "prompts": PROMPTS, "context_length": CONTEXT, "extract_layers": EXTRACT,
    }, indent=1, ensure_ascii=False))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
