"""Shared fixtures: the repository, the `vlsm` binary the package is compared with, and a tiny
medvlsm-layout dataset."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p for p in (REPO / "examples").iterdir() if p.suffix.lower() in (".jpg", ".png"))
DEFAULT_MODEL = REPO / "models/default"
TINY_CLIPSEG = REPO / "tests/fixtures/clipseg/tiny_complex"
TINY_IMAGES = REPO / "tests/fixtures/clipseg/images"


def vlsm_bin() -> Path:
    """The CLI the package must agree with: $VLSM_BIN, else target/release or target/debug."""
    env = os.environ.get("VLSM_BIN")
    if env:
        return Path(env)
    built = [p for p in (REPO / "target" / d / "vlsm" for d in ("release", "debug")) if p.is_file()]
    if built:
        return max(built, key=lambda p: p.stat().st_mtime)
    pytest.fail("no vlsm binary: build it (cargo build -p vlsm-cli) or set VLSM_BIN")


@pytest.fixture(scope="session")
def cli():
    """Runs the `vlsm` binary; returns its CompletedProcess (stderr for errors)."""
    exe = vlsm_bin()

    def run(*args, check=True):
        r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"vlsm {' '.join(map(str, args))} failed: {r.stderr}")
        return r

    return run


def read_png(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def write_png(path: Path, arr: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:
        arr = arr[:, :, ::-1]  # cv2 writes BGR
    assert cv2.imwrite(str(path), arr), path


@pytest.fixture(scope="session")
def squares(tmp_path_factory) -> Path:
    """Ten 40×30 images with a yellow square each, its mask, and no anns/ yet."""
    ds = tmp_path_factory.mktemp("data") / "squares"
    for i in range(10):
        img = np.zeros((30, 40, 3), np.uint8)
        img[:] = (30, 30, 90)
        m = np.zeros((30, 40), np.uint8)
        m[5:20, 5 + i : 20 + i] = 255
        img[m > 0] = (220, 200, 40)
        write_png(ds / "images" / f"{i}.png", img)
        write_png(ds / "masks" / f"{i}.png", m)
    return ds
