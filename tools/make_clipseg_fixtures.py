#!/usr/bin/env python3
"""Write the CLIPSeg parity fixtures under tests/fixtures/clipseg/ (dev-only; tests never run this).

    python tools/make_clipseg_fixtures.py [--shared ../shared] [--out tests/fixtures/clipseg]

Deterministic: torch.manual_seed / numpy seeds, no network (every config is built in code, the
tokenizer from the shared OpenAI merges file).

Outputs
-------
tokens.json
    {"max_length": 77, "prompts": [...], "fast": [[ids]...], "slow": [[ids]...],
     "slow_differs": [indices where slow != fast], "transformers": version,
     "wordpiece": {"vocab": "bert-base-uncased-vocab.txt", "max_length": 256,
                   "prompts": [...], "ids": [[ids]...]}}
    fast = transformers CLIPTokenizerFast (v4) / CLIPTokenizer (v5, tokenizers-backed): what
    CLIPSegProcessor uses. slow = transformers 4.x's pure-Python CLIPTokenizer on its no-ftfy path
    (BERT BasicTokenizer pre-split), ported in this script as SlowClipTokenizer because
    transformers 5 no longer ships it; it differs only on CJK ideographs (each becomes its own
    word). Ids with specials, truncation=True, max_length=77, no padding.
    wordpiece = BertTokenizerFast(do_lower_case=True) on the shared BERT vocab, truncation 256.
tiny_* config   text: hidden 8, 2 layers, 2 heads, intermediate 32, vocab 49408, 77 positions
                (hidden 8 rather than 16 keeps the fixtures near 10 MB: the token embedding is
                49408 x hidden floats); vision: hidden 32, 4 layers, 4 heads, intermediate 64,
                image 32, patch 8 (4x4 grid); projection 16; extract_layers [1,2,3]; reduce_dim 16;
                decoder 2 heads, intermediate 32; conditional_layer 0. LayerNorm weights 1+0.2N,
                LayerNorm biases 0.1N, other biases 0.05N, embeddings 0.5N, weights N/sqrt(fan_in).
                tiny_complex text ids bos/eos/pad = 49406/49407/49407 (eos pooling);
                tiny_simple uses the legacy 0/2/1 of CIDAS (eos_token_id == 2 -> argmax pooling).
tiny_complex/   CLIPSegForImageSegmentation, use_complex_transposed_convolution=True,
                model.safetensors; full save_pretrained tokenizer files (tokenizer.json, vocab.json,
                merges.txt, tokenizer_config.json, special_tokens_map.json); preprocessor_config.json
                (ViTImageProcessor, 32x32, resample 2) and preprocessor_config_48.json (48x48: 6x6
                patch grid vs trained 4x4 -> position-embedding interpolation).
tiny_simple/    use_complex_transposed_convolution=False, pytorch_model.bin; slow tokenizer files only
                (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json) as in
                CIDAS/clipseg-rd64-refined; preprocessor_config.json at 48x48 (interpolating, as
                CIDAS runs 352 on a 224 ViT).
clip_processor_config.json  a CLIPImageProcessor config (shortest_edge 40, bicubic, center crop 32)
                used only by the preprocessing case "preprocess_clip_bicubic".
images/         kvasir_75x50.png (RGB, non-square), kvasir_75x50_mask.png (L, 0/255),
                clinicdb_64.png (RGB, square), busi_60x45.png (L; converted to RGB as PIL's
                convert("RGB") does: R=G=B=L), busi_60x45_mask.png, and the engineered visual
                prompts prompt_kvasir.png, prompt_busi.png (RGB u8).
reference.safetensors  per case, tensors named "<case>.<name>" (see cases.json):
    pixel_values             f32 [B,3,S,S]   B = number of prompts (image repeated per prompt)
    input_ids                i64 [B,L]       (text cases)
    attention_mask           i64 [B,L]       (text cases)
    conditional_pixel_values f32 [1,3,S,S]   (image-prompt cases)
    conditional_embeddings   f32 [B,projection_dim]
    text_last_hidden_state   f32 [B,L,text_hidden]   (text cases; after final_layer_norm)
    vision_hidden_states     f32 [num_layers+1,B,1+g*g,vision_hidden]  (index 0 = pre_layrnorm output)
    activations              f32 [len(extract_layers),B,1+g*g,vision_hidden]
                             = vision_hidden_states[i+1] for i in extract_layers
    logits                   f32 [B,S,S]
    pil_resize.<stem>.<mode>.<filter>.<W>x<H>  u8 [H,W,C]: PIL Image.resize of a fixture image
                             (mode "RGB" C=3 or "L" C=1) with filter code 0..5
cases.json  {"pil_resize": [{"key", "image", "mode", "filter", "width", "height"}...],
             "cases": [{"name", "kind": "text"|"image"|"preprocess", "model_dir",
             "processor_config", "size", "image", "prompts", "padding": "max_length"|"longest",
             "pad_to": 77|null, "prompt_image", "prompt_source_image", "prompt_mask"}...],
             "visual_prompt": {...parameters...}}  (paths relative to tests/fixtures/clipseg)

Visual prompt engineering (CLIPSeg paper: crop, background darkened to 10% and blurred)
---------------------------------------------------------------------------------------
Input: RGB u8 image I (H x W x 3) and mask M (same size; foreground = value > 127).
1. Blur: B = I as float32, convolved separably with a Gaussian of sigma = 2.0, radius r = 6
   (13 taps), weights w[k] = exp(-k^2 / (2 sigma^2)) for k = -r..r computed in float64,
   divided by their sum, then cast to float32. Horizontal pass first, then vertical, each
   with reflect-101 borders (index -1 -> 1, W -> W-2; numpy.pad mode "reflect"), accumulated in
   float32 in tap order k = -r..r (a 1-ulp different order is fine: the result is checked to +-1).
2. Composite (float32): C = I where M, else 0.1 * B; then U = clip(floor(C + 0.5), 0, 255) as u8.
3. Crop: mask bounding box x0..x1, y0..y1 (inclusive min, exclusive max over foreground pixels);
   margin m = ceil(max(x1 - x0, y1 - y0) / 10) (integer: (max + 9) // 10); crop box
   [max(0, x0 - m), min(W, x1 + m)) x [max(0, y0 - m), min(H, y1 + m)). An empty mask is an
   error. The result is the prompt image; it then goes through the image processor as any image
   (resized to S x S without keeping the aspect ratio) and CLIP's get_image_features gives the
   conditional embedding.
"""

import argparse
import gzip
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

import transformers
from safetensors.torch import save_file
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation
from transformers.convert_slow_tokenizer import bytes_to_unicode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROMPTS = [
    "",
    "polyp",
    "one small pink circle polyp, located in right of the image",
    "Two Large RED oval polyps; bottom-left & top-right!",
    "a benign breast tumour, hypoechoic, 12 mm",
    "polyp    with   multiple     spaces",
    "  leading and trailing spaces  ",
    "tab\tand\nnewline",
    "punctuation: (a), [b], {c}... ?!-- \"quoted\" 'single' it's we're they'll I'd",
    "numbers 0123456789 3.14159 1,000,000 1e-5",
    "café résumé naïve über Ærø",
    "e\u0301 combining accent vs \u00e9",
    "胃のポリープ 息肉 종양",
    "emoji 🩺🔬 polyp 😀",
    "ALL CAPS POLYP IN THE COLON",
    "mIxEd CaSe TuMoR",
    "html &amp; &lt;b&gt; entities",
    "hyphen-ated well-defined non-hodgkin",
    "under_score snake_case CamelCase",
    "url https://example.com/a?b=c#d",
    "<|startoftext|> literal special tokens <|endoftext|>",
    "malignant tumor, irregular shape, located in center of the image",
    "x" * 300,
    " ".join(["polyp lesion tumour mass nodule"] * 20),  # > 77 tokens
    "one small pink circle polyp, located in right of the image, " * 6,  # > 77 tokens
]

BERT_PROMPTS = [
    "",
    "a benign breast tumour, hypoechoic, 12 mm",
    "Two Large RED oval polyps; bottom-left & top-right!",
    "café résumé naïve über",
    "胃のポリープ 息肉",
    "unaffable supercalifragilisticexpialidocious [MASK] [SEP]",
    " ".join(["polyp lesion tumour"] * 120),  # > 256 tokens
]

SIGMA = 2.0
RADIUS = 6
DARKEN = 0.1


def gaussian_kernel():
    k = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    w = np.exp(-(k * k) / (2.0 * SIGMA * SIGMA))
    return (w / w.sum()).astype(np.float32)


def blur(img_u8):
    w = gaussian_kernel()
    x = img_u8.astype(np.float32)
    h, wd, _ = x.shape
    p = np.pad(x, ((0, 0), (RADIUS, RADIUS), (0, 0)), mode="reflect")
    acc = np.zeros_like(x)
    for i, k in enumerate(range(-RADIUS, RADIUS + 1)):
        acc = acc + w[i] * p[:, i:i + wd, :]
    p = np.pad(acc, ((RADIUS, RADIUS), (0, 0), (0, 0)), mode="reflect")
    acc2 = np.zeros_like(x)
    for i, k in enumerate(range(-RADIUS, RADIUS + 1)):
        acc2 = acc2 + w[i] * p[i:i + h, :, :]
    return acc2


def visual_prompt(img_rgb, mask_l):
    """Engineered prompt image (see module docstring). img_rgb: PIL RGB, mask_l: PIL L."""
    i = np.asarray(img_rgb, dtype=np.uint8)
    m = np.asarray(mask_l, dtype=np.uint8) > 127
    assert i.shape[:2] == m.shape
    if not m.any():
        raise ValueError("empty mask")
    b = blur(i)
    c = np.where(m[:, :, None], i.astype(np.float32), np.float32(DARKEN) * b).astype(np.float32)
    u = np.clip(np.floor(c + np.float32(0.5)), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(m)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    mg = (max(x1 - x0, y1 - y0) + 9) // 10
    H, W = m.shape
    cx0, cx1 = max(0, x0 - mg), min(W, x1 + mg)
    cy0, cy1 = max(0, y0 - mg), min(H, y1 + mg)
    return Image.fromarray(u[cy0:cy1, cx0:cx1], "RGB")


def write_vocab_files(shared, tmp):
    """vocab.json + merges.txt from OpenAI's bpe_simple_vocab_16e6.txt.gz, in OpenAI's order."""
    lines = gzip.open(os.path.join(shared, "vocab", "bpe_simple_vocab_16e6.txt.gz")).read().decode("utf-8").split("\n")
    merges = [tuple(l.split()) for l in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    return os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")


def load_fast(vocab_path, merges_path):
    """transformers' CLIPTokenizerFast (v4) / CLIPTokenizer (v5, tokenizers-backed)."""
    vocab = json.load(open(vocab_path, encoding="utf-8"))
    lines = open(merges_path, encoding="utf-8").read().strip().split("\n")[1:]
    merges = [tuple(l.split(" ")) for l in lines]
    kw = dict(model_max_length=77, pad_token="<|endoftext|>")
    cls = getattr(transformers, "CLIPTokenizerFast", None)
    if cls is not None and cls.__name__ == "CLIPTokenizerFast":
        return cls(vocab_file=vocab_path, merges_file=merges_path, **kw)
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges, **kw)


class SlowClipTokenizer:
    """Port of transformers 4.x's pure-Python CLIPTokenizer on its no-ftfy path
    (BasicTokenizer(strip_accents=False, do_split_on_punc=False), IGNORECASE CLIP regex, BPE);
    transformers 5 no longer ships a slow CLIP tokenizer. Added special tokens in the raw text
    are split out first, as PreTrainedTokenizer.tokenize does."""

    PAT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

    def __init__(self, vocab_path, merges_path):
        import regex
        import unicodedata
        self.ud = unicodedata
        self.encoder = json.load(open(vocab_path, encoding="utf-8"))
        lines = open(merges_path, encoding="utf-8").read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        self.ranks = {tuple(l.split()): i for i, l in enumerate(lines)}
        self.byte_encoder = bytes_to_unicode()
        self.pat = regex.compile(self.PAT, regex.IGNORECASE)
        self.cache = {}
        self.specials = ["<|startoftext|>", "<|endoftext|>"]

    def _is_control(self, c):
        if c in "\t\n\r":
            return False
        return self.ud.category(c).startswith("C")

    def _is_ws(self, c):
        return c in " \t\n\r" or self.ud.category(c) == "Zs"

    @staticmethod
    def _is_cjk(cp):
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
                or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def basic(self, text):
        out = []
        for c in text:
            cp = ord(c)
            if cp == 0 or cp == 0xFFFD or self._is_control(c):
                continue
            out.append(" " if self._is_ws(c) else c)
        text = "".join(out)
        text = "".join(f" {c} " if self._is_cjk(ord(c)) else c for c in text)
        text = self.ud.normalize("NFC", text)
        toks = [t.lower() for t in text.strip().split()]
        return " ".join(toks).strip().split()

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            bigram = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if bigram not in self.ranks:
                break
            a, b = bigram
            new, i = [], 0
            while i < len(word):
                try:
                    j = word.index(a, i)
                except ValueError:
                    new.extend(word[i:])
                    break
                new.extend(word[i:j])
                i = j
                if word[i] == a and i < len(word) - 1 and word[i + 1] == b:
                    new.append(a + b)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        self.cache[token] = list(word)
        return list(word)

    def _tokenize(self, text):
        text = " ".join(self.basic(text))
        out = []
        for tok in self.pat.findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            out.extend(self.bpe(tok))
        return out

    def __call__(self, text, truncation=True, max_length=77):
        import regex
        parts = regex.split("(" + "|".join(regex.escape(s) for s in self.specials) + ")", text)
        ids = []
        for p in parts:
            if p in self.specials:
                ids.append(self.encoder[p])
            elif p:
                unk = self.encoder["<|endoftext|>"]
                ids.extend(self.encoder.get(t, unk) for t in self._tokenize(p))
        if truncation:
            ids = ids[: max_length - 2]
        return {"input_ids": [self.encoder["<|startoftext|>"]] + ids + [self.encoder["<|endoftext|>"]]}


def tiny_config(complex_head):
    text = dict(vocab_size=49408, hidden_size=8, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77)
    if complex_head:
        text.update(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    else:  # legacy ids as in CIDAS/clipseg-rd64-refined (eos_token_id == 2 -> argmax pooling)
        text.update(bos_token_id=0, eos_token_id=2, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  image_size=32, patch_size=8, num_channels=3)
    return CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=16,
                         extract_layers=[1, 2, 3], reduce_dim=16, decoder_num_attention_heads=2,
                         decoder_intermediate_size=32, conditional_layer=0,
                         use_complex_transposed_convolution=complex_head)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                continue
            if "layer_norm" in name or "layernorm" in name or "layrnorm" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif "embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(max(fan_in, 1)))


def vit_cfg(size):
    return {"do_resize": True, "size": {"height": size, "width": size}, "resample": 2,
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "image_processor_type": "ViTImageProcessor", "processor_class": "CLIPSegProcessor"}


def clip_cfg():
    return {"do_resize": True, "size": {"shortest_edge": 40}, "resample": 3,
            "do_center_crop": True, "crop_size": {"height": 32, "width": 32},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "do_convert_rgb": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "CLIPImageProcessor"}


def make_processor(cfg):
    # The PIL ("slow") processors: the reference semantics this project reproduces.
    kw = {k: v for k, v in cfg.items() if k not in ("image_processor_type", "processor_class")}
    if cfg["image_processor_type"] == "ViTImageProcessor":
        cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    else:
        cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    proc = cls(**kw)
    return proc


def pixel_values(proc, images):
    out = proc(images=images, return_tensors="np")["pixel_values"]
    return torch.from_numpy(np.asarray(out, dtype=np.float32))


def make_images(shared, out_dir):
    d = os.path.join(out_dir, "images")
    os.makedirs(d, exist_ok=True)
    k = "cju2rqo702wpx0855fn7d5cxh"
    kimg = Image.open(os.path.join(shared, "data/kvasir_polyp/images", k + ".jpg")).convert("RGB")
    kmask = Image.open(os.path.join(shared, "data/kvasir_polyp/masks", k + ".png")).convert("L")
    kimg.resize((75, 50), Image.BICUBIC).save(os.path.join(d, "kvasir_75x50.png"))
    kmask.resize((75, 50), Image.NEAREST).point(lambda v: 255 if v > 127 else 0).save(
        os.path.join(d, "kvasir_75x50_mask.png"))
    cimg = Image.open(os.path.join(shared, "data/clinicdb_polyp/images/10.png")).convert("RGB")
    w, h = cimg.size
    s = min(w, h)
    cimg.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize(
        (64, 64), Image.BICUBIC).save(os.path.join(d, "clinicdb_64.png"))
    bimg = Image.open(os.path.join(shared, "data/busi/images/100_benign.jpg")).convert("L")
    bmask = Image.open(os.path.join(shared, "data/busi/masks/100_benign.png")).convert("L")
    bimg.resize((60, 45), Image.BICUBIC).save(os.path.join(d, "busi_60x45.png"))
    bmask.resize((60, 45), Image.NEAREST).point(lambda v: 255 if v > 127 else 0).save(
        os.path.join(d, "busi_60x45_mask.png"))
    # engineered visual prompts
    for name, img, mask in [("prompt_kvasir.png", "kvasir_75x50.png", "kvasir_75x50_mask.png"),
                            ("prompt_busi.png", "busi_60x45.png", "busi_60x45_mask.png")]:
        im = Image.open(os.path.join(d, img)).convert("RGB")
        mk = Image.open(os.path.join(d, mask)).convert("L")
        visual_prompt(im, mk).save(os.path.join(d, name))


def load_rgb(out_dir, rel):
    return Image.open(os.path.join(out_dir, rel)).convert("RGB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "clipseg"))
    args = ap.parse_args()
    shared, out = os.path.abspath(args.shared), os.path.abspath(args.out)
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_grad_enabled(False)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    tmp = os.path.join(out, "_tok_tmp")
    vocab, merges = write_vocab_files(shared, tmp)
    fast = load_fast(vocab, merges)
    slow = SlowClipTokenizer(vocab, merges)

    # ---- tokens.json
    enc = lambda t, p: t(p, truncation=True, max_length=77)["input_ids"]
    fast_ids = [enc(fast, p) for p in PROMPTS]
    slow_ids = [enc(slow, p) for p in PROMPTS] if slow is not None else None
    bert_vocab = os.path.join(shared, "vocab", "bert-base-uncased-vocab.txt")
    if int(transformers.__version__.split(".")[0]) >= 5:  # tokenizers-backed BertTokenizer
        words = open(bert_vocab, encoding="utf-8").read().split("\n")
        if words and words[-1] == "":
            words = words[:-1]
        vocab_map = {}
        for i, t in enumerate(words):
            vocab_map.setdefault(t, i)
        bert = transformers.BertTokenizer(vocab=vocab_map, do_lower_case=True)
    else:
        bert = transformers.BertTokenizerFast(vocab_file=bert_vocab, do_lower_case=True)
    assert bert("a polyp")["input_ids"][0] == 101, "BERT vocab not loaded"
    tokens = {
        "transformers": transformers.__version__,
        "max_length": 77,
        "prompts": PROMPTS,
        "fast": fast_ids,
        "slow": slow_ids,
        "slow_differs": [i for i in range(len(PROMPTS)) if slow_ids and slow_ids[i] != fast_ids[i]],
        "wordpiece": {
            "vocab": "bert-base-uncased-vocab.txt",
            "max_length": 256,
            "prompts": BERT_PROMPTS,
            "ids": [bert(p, truncation=True, max_length=256)["input_ids"] for p in BERT_PROMPTS],
        },
    }
    with open(os.path.join(out, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump(tokens, f, ensure_ascii=False, indent=1)

    # ---- models
    models = {}
    for name, complex_head, seed in [("tiny_complex", True, 1), ("tiny_simple", False, 2)]:
        torch.manual_seed(seed)
        model = CLIPSegForImageSegmentation(tiny_config(complex_head)).eval()
        randomize(model, seed)
        d = os.path.join(out, name)
        model.save_pretrained(d, safe_serialization=True)
        if not complex_head:  # transformers 5 writes only safetensors; write the legacy .bin
            os.remove(os.path.join(d, "model.safetensors"))
            torch.save(model.state_dict(), os.path.join(d, "pytorch_model.bin"))
        if complex_head:
            fast.save_pretrained(d)
            with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
                json.dump(vit_cfg(32), f, indent=2)
            with open(os.path.join(d, "preprocessor_config_48.json"), "w") as f:
                json.dump(vit_cfg(48), f, indent=2)
        else:
            fast.save_pretrained(d)
            os.remove(os.path.join(d, "tokenizer.json"))  # slow-tokenizer files only, like CIDAS
            for fn in ("vocab.json", "merges.txt"):
                if not os.path.exists(os.path.join(d, fn)):
                    shutil.copy(os.path.join(tmp, fn), os.path.join(d, fn))
            with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
                json.dump(vit_cfg(48), f, indent=2)
        # reload from disk so the reference uses exactly the saved weights
        models[name] = CLIPSegForImageSegmentation.from_pretrained(d).eval()
    for name in models:  # the slow-tokenizer files save_pretrained (v4) writes beside tokenizer.json
        for fn in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tmp, fn), os.path.join(out, name, fn))
        with open(os.path.join(out, name, "special_tokens_map.json"), "w") as f:
            tok = lambda t: {"content": t, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
            json.dump({"bos_token": tok("<|startoftext|>"), "eos_token": tok("<|endoftext|>"),
                       "pad_token": "<|endoftext|>", "unk_token": tok("<|endoftext|>")}, f, indent=2)
    with open(os.path.join(out, "clip_processor_config.json"), "w") as f:
        json.dump(clip_cfg(), f, indent=2)
    shutil.rmtree(tmp)

    make_images(shared, out)

    # ---- cases
    P3 = ["one small pink circle polyp, located in right of the image", "polyp", ""]
    PB = ["malignant tumor, irregular shape, located in center of the image", "breast tumour",
          " ".join(["polyp lesion tumour mass nodule"] * 20)]
    cases = [
        dict(name="text_square_complex", kind="text", model_dir="tiny_complex",
             processor_config="tiny_complex/preprocessor_config.json", image="images/clinicdb_64.png",
             prompts=P3, padding="max_length", pad_to=77),
        dict(name="text_nonsquare_complex_longest", kind="text", model_dir="tiny_complex",
             processor_config="tiny_complex/preprocessor_config.json", image="images/kvasir_75x50.png",
             prompts=["Two Large RED oval polyps; bottom-left & top-right!", "polyp", "café 🩺"],
             padding="longest", pad_to=None),
        dict(name="text_interp_complex", kind="text", model_dir="tiny_complex",
             processor_config="tiny_complex/preprocessor_config_48.json", image="images/kvasir_75x50.png",
             prompts=P3[:2], padding="max_length", pad_to=77),
        dict(name="text_busi_simple_interp", kind="text", model_dir="tiny_simple",
             processor_config="tiny_simple/preprocessor_config.json", image="images/busi_60x45.png",
             prompts=PB, padding="max_length", pad_to=77),
        dict(name="text_square_simple_longest", kind="text", model_dir="tiny_simple",
             processor_config="tiny_simple/preprocessor_config.json", image="images/clinicdb_64.png",
             prompts=P3, padding="longest", pad_to=None),
        dict(name="image_prompt_complex", kind="image", model_dir="tiny_complex",
             processor_config="tiny_complex/preprocessor_config.json", image="images/clinicdb_64.png",
             prompts=[], prompt_image="images/prompt_kvasir.png",
             prompt_source_image="images/kvasir_75x50.png", prompt_mask="images/kvasir_75x50_mask.png"),
        dict(name="image_prompt_simple_interp", kind="image", model_dir="tiny_simple",
             processor_config="tiny_simple/preprocessor_config.json", image="images/kvasir_75x50.png",
             prompts=[], prompt_image="images/prompt_busi.png",
             prompt_source_image="images/busi_60x45.png", prompt_mask="images/busi_60x45_mask.png"),
        dict(name="preprocess_clip_bicubic", kind="preprocess", model_dir=None,
             processor_config="clip_processor_config.json", image="images/kvasir_75x50.png", prompts=[]),
        dict(name="preprocess_clip_bicubic_busi", kind="preprocess", model_dir=None,
             processor_config="clip_processor_config.json", image="images/busi_60x45.png", prompts=[]),
    ]
    tensors = {}
    for c in cases:
        cfg = json.load(open(os.path.join(out, c["processor_config"])))
        proc = make_processor(cfg)
        c["size"] = (cfg["size"].get("height") if "height" in cfg["size"] else cfg["crop_size"]["height"])
        img = load_rgb(out, c["image"])
        n = max(1, len(c["prompts"]))
        pv = pixel_values(proc, [img] * n)
        T = lambda k, v: tensors.__setitem__(f"{c['name']}.{k}", v.contiguous())
        T("pixel_values", pv)
        if c["kind"] == "preprocess":
            continue
        model = models[c["model_dir"]]
        if c["kind"] == "text":
            if c["padding"] == "max_length":
                t = fast(c["prompts"], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            else:
                t = fast(c["prompts"], padding=True, truncation=True, max_length=77, return_tensors="pt")
            ids, am = t["input_ids"].to(torch.int64), t["attention_mask"].to(torch.int64)
            T("input_ids", ids)
            T("attention_mask", am)
            o = model(input_ids=ids, attention_mask=am, pixel_values=pv, output_hidden_states=True,
                      interpolate_pos_encoding=True) if _accepts_interp(model) else \
                model(input_ids=ids, attention_mask=am, pixel_values=pv, output_hidden_states=True)
            txt = model.clip.text_model(input_ids=ids, attention_mask=am)
            T("text_last_hidden_state", txt.last_hidden_state)
        else:
            pimg = load_rgb(out, c["prompt_image"])
            cpv = pixel_values(proc, [pimg])
            T("conditional_pixel_values", cpv)
            kw = dict(pixel_values=pv, conditional_pixel_values=cpv, output_hidden_states=True)
            if _accepts_interp(model):
                kw["interpolate_pos_encoding"] = True
            o = model(**kw)
        T("conditional_embeddings", o.conditional_embeddings)
        vhs = o.vision_model_output.hidden_states
        T("vision_hidden_states", torch.stack(list(vhs)))
        T("activations", torch.stack([vhs[i + 1] for i in model.config.extract_layers]))
        T("logits", o.logits)
    # ---- raw PIL resizes (u8, [H, W, C]) for pil_resize bit-exactness
    resize_cases = []
    for src, mode in [("images/kvasir_75x50.png", "RGB"), ("images/busi_60x45.png", "L")]:
        im = Image.open(os.path.join(out, src)).convert(mode)
        for fcode, fname in [(0, "nearest"), (1, "lanczos"), (2, "bilinear"), (3, "bicubic"), (4, "box"), (5, "hamming")]:
            # (70,10), (59,22), (40,3): Pillow 13 runs the vertical pass first; (65,30), (40,5): boundary
            for (w, h) in [(32, 32), (48, 48), (101, 37), (20, 77), (7, 5), (75, 13), (70, 10), (65, 30), (59, 22), (40, 5), (40, 3)]:
                key = f"pil_resize.{os.path.basename(src)[:-4]}.{mode}.{fname}.{w}x{h}"
                a = np.asarray(im.resize((w, h), resample=fcode))
                if a.ndim == 2:
                    a = a[:, :, None]
                tensors[key] = torch.from_numpy(np.ascontiguousarray(a))
                resize_cases.append(dict(key=key, image=src, mode=mode, filter=fcode, width=w, height=h))
    save_file(tensors, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "visual_prompt": {"sigma": SIGMA, "radius": RADIUS, "darken": DARKEN,
                                     "margin": "ceil(max(bbox_w, bbox_h) / 10)",
                                     "border": "reflect101", "round": "floor(x + 0.5)"},
                   "cases": cases, "pil_resize": resize_cases}, f, ensure_ascii=False, indent=1)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
    print(f"wrote {out}: {total / 1e6:.2f} MB; slow differs on {tokens['slow_differs']}")


def _accepts_interp(model):
    import inspect
    return "interpolate_pos_encoding" in inspect.signature(model.forward).parameters


if __name__ == "__main__":
    main()
