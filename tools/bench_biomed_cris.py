"""Times the PyTorch references of CRIS (RN50, 416 px) and BiomedCLIPSeg (ViT-B/16 at 224 +
PubMedBERT-size BERT, 256 tokens) at full size with random weights, batch 1, beside vlsm's
`bench` in the same run (dev only).

    CRIS_REPO=/tmp/cris /work/pyenv/venv/bin/python tools/bench_biomed_cris.py \
        --threads 2 --iters 5 --rust "target/release/vlsm bench {model} --iters 5"

`--rust` is a command template run for each model ("cris", "biomedclipseg"); its output is
printed as is. Offline: the BERT config is built locally, the timm ViT from its registry name.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed(fn, iters):
    fn()  # warm-up
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def cris_model():
    os.environ.setdefault("CRIS_REPO", "/tmp/cris")
    from make_cris_fixtures import Cris
    cfg = {"backbone": {"embed_dim": 1024, "image_resolution": 224, "vision_layers": [3, 4, 6, 3],
                        "vision_width": 64, "context_length": 77, "vocab_size": 49408,
                        "transformer_width": 512, "transformer_heads": 8, "transformer_layers": 12},
           "word_len": 77, "fpn_in": [512, 1024, 1024], "fpn_out": [256, 512, 1024],
           "vis_dim": 512, "word_dim": 1024, "num_layers": 3, "num_head": 8, "dim_ffn": 2048,
           "img_size": 416}
    m = Cris(cfg).eval()
    img = torch.randn(1, 3, 416, 416)
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, :4] = torch.tensor([49406, 320, 1929, 49407])
    mask = torch.zeros(1, 1, 416, 416)
    return lambda: m(img, ids, mask)


def biomedclipseg_model():
    import json
    import open_clip
    from open_clip.model import CustomTextCLIP
    from transformers import BertConfig, CLIPSegConfig, CLIPSegForImageSegmentation
    d = tempfile.mkdtemp()
    BertConfig().save_pretrained(os.path.join(d, "bert"))  # bert-base = PubMedBERT's shape
    os.chdir(d)
    mc = {"embed_dim": 512,
          "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False,
                         "timm_pool": "", "timm_proj": "linear", "image_size": 224},
          "text_cfg": {"hf_model_name": "bert", "hf_tokenizer_name": "bert", "hf_proj_type": "mlp",
                       "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 256,
                       "hf_model_pretrained": False}}
    clip = CustomTextCLIP(**mc).eval()
    c = CLIPSegConfig(extract_layers=[3, 6, 9], reduce_dim=64, use_complex_transposed_convolution=True,
                      vision_config={"patch_size": 16})
    decoder = CLIPSegForImageSegmentation(c).decoder.eval()
    img = torch.randn(1, 3, 224, 224)
    ids = torch.zeros(1, 256, dtype=torch.long)
    ids[0, :5] = torch.tensor([2, 1000, 2000, 3000, 3])
    mask = (ids != 0).long()

    def run():
        # medvlsm's BiomedCLIPSeg.forward: _forward_vit, _forward_bert, decoder.
        vit = clip.visual.trunk
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(img)))
        hidden = []
        for block in vit.blocks:
            x = block(x)
            hidden.append(x)
        clip.visual.head(vit.norm(x)[:, 0])
        out = clip.text.transformer(input_ids=ids, attention_mask=mask)
        cond = clip.text.proj(out.last_hidden_state[:, 0])
        return decoder([hidden[i + 1] for i in c.extract_layers], cond).logits
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--rust", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads, batch 1, {a.iters} iterations after warm-up")
    for name, build in [("cris", cris_model), ("biomedclipseg", biomedclipseg_model)]:
        with torch.inference_mode():
            t = timed(build(), a.iters)
        print(f"pytorch {name}: median {statistics.median(t) * 1000:.1f} ms (min {min(t) * 1000:.1f})")
        if a.rust:
            cmd = a.rust.format(model=name)
            env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env)
            print(f"vlsm {name}: {r.stdout.strip()} {r.stderr.strip()[-300:]}")


if __name__ == "__main__":
    main()
