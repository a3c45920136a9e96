"""JPEG decoding fixtures for crates/vlsm/tests/it/jpeg_parity.rs (dev only; tests never run Python).

1. tests/fixtures/jpeg/*.jpg: small images (45x37 and 61x53, not multiples of the MCU) in every
   layout the reference decoders meet: baseline and progressive with 4:2:0, 4:2:2 and 4:4:4
   chroma, greyscale, restart markers, CMYK (PIL, Adobe polarity) written with PIL; YCCK, 4:4:0
   and 4:1:1 written by tools/jpeg_writer (libjpeg's encoder; PIL cannot write them).
   Next to each, NAME.png holds PIL's pixels: `Image.open` for L and RGB, `.convert("RGB")` for
   CMYK (what vlsm's read_rgb promises), and cases.json the mode, size and layout.
2. tests/fixtures/jpeg/checksums.json: CRC-32 of PIL's `Image.open(p).convert("RGB")` bytes for
   the JPEGs in examples/ and for the test splits of ../shared/data/{kvasir_polyp,busi} ($VLSM_SHARED_DATA if set).

PIL (libjpeg-turbo, its defaults) is the reference; cv2.imread gives the same RGB values for the
YCbCr and greyscale files (checked here and recorded in cases.json as "cv2_equal").

Run: /work/pyenv/venv/bin/python tools/make_jpeg_fixtures.py
(needs cargo for tools/jpeg_writer, built in $CARGO_TARGET_DIR or a temporary target directory)
"""
import json
import os
import subprocess
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import PIL
from PIL import Image, features

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/jpeg"
SHARED = Path(os.environ.get("VLSM_SHARED_DATA", ROOT.parent / "shared/data"))


def pattern(w, h, seed):
    """Gradients, hard colour edges, a disc and some noise: every chroma path has work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    edge = (((x // 7) + (y // 5)) % 2) * 60
    disc = ((x - w * 2 // 3) ** 2 + (y - h // 3) ** 2 < (min(w, h) // 4) ** 2) * 120
    r = x * 255 // (w - 1) - edge // 2 + disc
    g = y * 255 // (h - 1) + edge - disc // 2
    b = (x + y) * 4 % 256 + disc // 3 + rng.integers(-20, 21, size=(h, w))
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def pil_cases(tmp):
    rgb45 = Image.fromarray(pattern(45, 37, 1))
    rgb61 = Image.fromarray(pattern(61, 53, 2))
    gray = rgb61.convert("L")
    cmyk = Image.fromarray(np.concatenate([pattern(45, 37, 3), pattern(45, 37, 4)[..., :1]], -1), "CMYK")
    files = {}
    for name, im in [("45x37", rgb45), ("61x53", rgb61)]:
        for sub, tag in [(2, "420"), (1, "422"), (0, "444")]:
            files[f"baseline_{tag}_{name}.jpg"] = (im, dict(quality=85, subsampling=sub))
            files[f"progressive_{tag}_{name}.jpg"] = (im, dict(quality=85, subsampling=sub, progressive=True))
    files["gray_baseline.jpg"] = (gray, dict(quality=85))
    files["gray_progressive.jpg"] = (gray, dict(quality=85, progressive=True))
    files["restart_blocks_420.jpg"] = (rgb61, dict(quality=85, subsampling=2, restart_marker_blocks=3))
    files["restart_rows_444.jpg"] = (rgb61, dict(quality=85, subsampling=0, restart_marker_rows=1))
    files["restart_progressive_422.jpg"] = (rgb61, dict(quality=85, subsampling=1, progressive=True,
                                                        restart_marker_blocks=2))
    files["optimized_420.jpg"] = (rgb61, dict(quality=60, subsampling=2, optimize=True))
    files["cmyk_baseline.jpg"] = (cmyk, dict(quality=85))
    files["cmyk_progressive.jpg"] = (cmyk, dict(quality=85, progressive=True))
    for n, (im, kw) in files.items():
        im.save(OUT / n, **kw)
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(Path(tmp) / "target"))
    subprocess.run(["cargo", "run", "-q", "--release", "--manifest-path", str(ROOT / "tools/jpeg_writer/Cargo.toml"),
                    "--", str(OUT)], check=True, env=env)
    return sorted(p.name for p in OUT.glob("*.jpg"))


def pil_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def main():
    assert features.check_feature("libjpeg_turbo"), "PIL must be built with libjpeg-turbo"
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.glob("*"):
        p.unlink()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        names = pil_cases(tmp)
    for n in names:
        im = Image.open(OUT / n)
        mode, layers, progressive = im.mode, getattr(im, "layer", None), bool(im.info.get("progressive"))
        ref = im if mode in ("L", "RGB") else im.convert("RGB")
        ref.save(OUT / n.replace(".jpg", ".png"))
        cv = cv2.imread(str(OUT / n), cv2.IMREAD_COLOR)
        cv2_equal = bool((cv[..., ::-1] == pil_rgb(OUT / n)).all())
        cases.append({"file": n, "pil_mode": mode, "width": im.width, "height": im.height,
                      "progressive": progressive, "layers": layers, "cv2_equal": cv2_equal})
    checks = {}
    for p in sorted((ROOT / "examples").glob("*.jpg")):
        checks[f"examples/{p.name}"] = zlib.crc32(pil_rgb(p).tobytes())
    for ds in ["kvasir_polyp", "busi"]:
        for rec in json.loads((SHARED / ds / "anns/test.json").read_text()):
            p = SHARED / ds / "images" / rec["img_name"]
            checks[f"{ds}/images/{rec['img_name']}"] = zlib.crc32(pil_rgb(p).tobytes())
    meta = {"pillow": PIL.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
            "opencv": cv2.__version__}
    (OUT / "cases.json").write_text(json.dumps({**meta, "cases": cases}, indent=1) + "\n")
    (OUT / "checksums.json").write_text(json.dumps(
        {**meta, "what": "CRC-32 of PIL's Image.open(p).convert('RGB') bytes (row-major RGB)",
         "shared_root": "../shared/data", "crc32": checks}, indent=0) + "\n")
    print(len(cases), "cases;", sum(c["cv2_equal"] for c in cases), "equal in cv2;", len(checks), "checksums")


if __name__ == "__main__":
    main()
