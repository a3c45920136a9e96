"""vlsm.Segmenter against the `vlsm segment` binary: the same mask pixels and logits bytes on the
examples (built-in model) and on the tiny CLIPSeg fixture; array inputs of every layout; the
error paths; threads."""

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import vlsm
from conftest import DEFAULT_MODEL, EXAMPLES, TINY_CLIPSEG, TINY_IMAGES, read_png, write_png

PROMPT = "one medium orange round polyp, located in center of the image"


@pytest.fixture(scope="module")
def builtin():
    return vlsm.Segmenter()


@pytest.fixture(scope="module")
def tiny():
    return vlsm.Segmenter(TINY_CLIPSEG)


def cli_segment(cli, tmp_path, images, prompts, model=None, logits=False):
    """`vlsm segment` into tmp_path; returns (masks per image as bool [N, H, W], logits or None)."""
    out = tmp_path / "cli"
    args = ["segment", *images, "--out", out]
    for p in prompts:
        args += ["-p", p]
    if model is not None:
        args += ["--model", model]
    if logits:
        args += ["--logits", out / "logits.npy"]
    cli(*args)
    masks = []
    for img in images:
        names = [f"{img.stem}.mask.png"] if len(prompts) == 1 else [f"{img.stem}.{k}.mask.png" for k in range(len(prompts))]
        m = np.stack([read_png(out / n) for n in names])
        assert set(np.unique(m)) <= {0, 255}
        masks.append(m == 255)
    return masks, (np.load(out / "logits.npy") if logits else None)


def rgb(path):
    """The pixels of a PNG as vlsm takes them: RGB, or H×W for a grey file."""
    a = read_png(path)
    return a if a.ndim == 2 else np.ascontiguousarray(a[:, :, ::-1])


@pytest.mark.parametrize("image", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_the_cli_byte_for_byte(builtin, cli, tmp_path, image):
    (masks,), logits = cli_segment(cli, tmp_path, [image], [PROMPT], logits=True)
    r = builtin.segment(str(image), PROMPT)
    assert r.masks.dtype == np.bool_ and r.masks.shape == masks.shape
    assert np.array_equal(r.masks, masks)
    assert r.logits.dtype == np.float32 and r.logits.shape == (1, *logits.shape)
    assert r.logits[0].tobytes() == logits.astype(np.float32).tobytes()
    assert r.probs.dtype == np.float32 and r.probs.shape == masks.shape
    assert np.array_equal(r.probs > r.threshold, r.masks)
    assert r.areas == [int(masks[0].sum())]
    assert r.threshold == builtin.default_threshold and r.prompts == [PROMPT]
    if image.name.startswith("kvasir"):
        assert r.areas[0] > 0, "the README example's polyp is found"


def test_png_example_as_an_array_equals_the_file(builtin, cli, tmp_path):
    png = next(p for p in EXAMPLES if p.suffix == ".png")
    prompts = [PROMPT, "a polyp", ""]
    (masks,), _ = cli_segment(cli, tmp_path, [png], prompts)
    r = builtin.segment(rgb(png), prompts)
    assert np.array_equal(r.masks, masks)
    f = builtin.segment(png, prompts)  # a pathlib.Path
    assert r.logits.tobytes() == f.logits.tobytes() and r.probs.tobytes() == f.probs.tobytes()
    assert len(r) == 3 and r.logits.shape[0] == 3


def test_tiny_clipseg_fixture_matches_the_cli(tiny, cli, tmp_path):
    images = sorted(p for p in TINY_IMAGES.glob("*.png") if "mask" not in p.name and "prompt" not in p.name)
    prompts = ["polyp", "a round thing", "tumour"]
    masks, _ = cli_segment(cli, tmp_path, images, prompts, model=TINY_CLIPSEG)
    results = tiny.segment_batch([str(p) for p in images], prompts)
    assert len(results) == len(images)
    for r, m, p in zip(results, masks, images):
        assert np.array_equal(r.masks, m), p
        one = tiny.segment(rgb(p), prompts)  # one image alone, from an array
        assert one.logits.tobytes() == r.logits.tobytes()
        assert np.array_equal(one.masks, m)
    for p in images:
        (m,), logits = cli_segment(cli, tmp_path / p.stem, [p], ["polyp"], model=TINY_CLIPSEG, logits=True)
        r = tiny.segment(p, "polyp")
        assert r.logits[0].tobytes() == logits.tobytes() and np.array_equal(r.masks, m)


def test_threshold_is_the_clis(tiny, cli, tmp_path):
    img = TINY_IMAGES / "kvasir_75x50.png"
    out = tmp_path / "t"
    cli("segment", img, "-p", "polyp", "--model", TINY_CLIPSEG, "--threshold", "0.3", "--out", out)
    r = tiny.segment(img, "polyp", threshold=0.3)
    assert r.threshold == pytest.approx(0.3)
    assert np.array_equal(r.masks[0], read_png(out / "kvasir_75x50.mask.png") == 255)


def test_grey_and_unusual_arrays(tiny, cli, tmp_path):
    grey = read_png(TINY_IMAGES / "kvasir_75x50.png")[:, :, 1].copy()
    gpath = tmp_path / "grey.png"
    write_png(gpath, grey)
    (masks,), _ = cli_segment(cli, tmp_path, [gpath], ["polyp"], model=TINY_CLIPSEG)
    want = tiny.segment(grey, "polyp")
    assert np.array_equal(want.masks, masks)
    assert tiny.segment(grey[:, :, None], "polyp").logits.tobytes() == want.logits.tobytes()

    img = rgb(TINY_IMAGES / "kvasir_75x50.png")
    ref = tiny.segment(img, "polyp")
    ro = img.copy()
    ro.setflags(write=False)
    fortran = np.asfortranarray(img)
    big = np.zeros((img.shape[0] * 2, img.shape[1] * 3, 6), np.uint8)
    big[::2, ::3, 1::2] = img  # strided in every axis
    strided = big[::2, ::3, 1::2]
    assert not strided.flags.c_contiguous
    be = img.astype(">u1")  # byte order means nothing for one byte
    for arr in (ro, fortran, strided, be):
        assert tiny.segment(arr, "polyp").logits.tobytes() == ref.logits.tobytes()
    flipped = img[::-1, ::-1]
    assert np.array_equal(
        tiny.segment(flipped, "polyp").masks, tiny.segment(np.ascontiguousarray(flipped), "polyp").masks
    )


def test_bad_arrays_and_arguments_say_which(tiny):
    img = np.zeros((20, 30, 3), np.uint8)
    cases = [
        (img.astype(np.float32), "image", "uint8"),
        (img.astype(np.uint16), "image", "uint8"),
        (img.astype(bool), "image", "uint8"),
        (np.zeros((20, 30, 4), np.uint8), "image", "shape"),
        (np.zeros((2, 20, 30, 3), np.uint8), "image", "shape"),
        (np.zeros((20,), np.uint8), "image", "shape"),
        (np.zeros((0, 30, 3), np.uint8), "image", "zero size"),
    ]
    for arr, name, what in cases:
        with pytest.raises(ValueError) as e:
            tiny.segment(arr, "polyp")
        assert name in str(e.value) and what in str(e.value), str(e.value)
    with pytest.raises(TypeError, match="image"):
        tiny.segment([[1, 2, 3]], "polyp")
    with pytest.raises(ValueError, match="threshold"):
        tiny.segment(img, "polyp", threshold=1.5)
    with pytest.raises(ValueError, match="prompt"):
        tiny.segment(img, [])
    with pytest.raises(TypeError, match="prompts"):
        tiny.segment(img, 3)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        tiny.segment_batch([img, img.astype(np.float64)], "polyp")
    with pytest.raises(TypeError, match="images"):
        tiny.segment_batch("a.png", "polyp")
    assert tiny.segment_batch([], "polyp") == []


def cli_error(cli, *args):
    r = cli(*args, check=False)
    assert r.returncode != 0
    line = r.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, r.stderr
    return line[len("error: ") :]


def test_file_errors_carry_the_clis_message(tiny, cli, tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError) as e:
        tiny.segment(missing, "polyp")
    assert str(e.value) == cli_error(cli, "segment", missing, "-p", "polyp", "--model", TINY_CLIPSEG, "--out", tmp_path)

    with pytest.raises(FileNotFoundError) as e:
        vlsm.Segmenter(tmp_path / "no-model")
    assert str(e.value) == cli_error(cli, "segment", TINY_IMAGES / "kvasir_75x50.png", "-p", "x", "--model", tmp_path / "no-model")

    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ValueError) as e:
        vlsm.Segmenter(empty)
    assert str(e.value) == cli_error(cli, "segment", TINY_IMAGES / "kvasir_75x50.png", "-p", "x", "--model", empty)

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="bad.png"):
        tiny.segment(bad, "polyp")
    with pytest.raises(ValueError, match="directory"):
        tiny.segment(tmp_path, "polyp")
    with pytest.raises(ValueError, match="threads"):
        vlsm.Segmenter(TINY_CLIPSEG, threads=0)


def test_a_panic_is_a_runtime_error_not_an_abort():
    with pytest.raises(RuntimeError, match="deliberate panic"):
        vlsm._vlsm._panic_for_tests()
    assert vlsm.Segmenter(TINY_CLIPSEG).kind == "clipseg"  # the interpreter lives on


def test_shared_between_threads_and_releases_the_gil(builtin):
    images = [rgb(p) if p.suffix == ".png" else str(p) for p in EXAMPLES]
    want = [builtin.segment(im, PROMPT).logits.tobytes() for im in images]
    got = [None] * (2 * len(images))
    errors = []

    def work(i):
        try:
            got[i] = builtin.segment(images[i % len(images)], PROMPT).logits.tobytes()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(got))]
    spins = 0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        spins += 1  # runs only while the segmenting threads have let go of the GIL
    for t in threads:
        t.join()
    assert not errors, errors
    assert got == want * 2
    assert spins > 1000, spins


def test_threads_cap_gives_the_same_numbers(tiny):
    img = TINY_IMAGES / "kvasir_75x50.png"
    one = vlsm.Segmenter(TINY_CLIPSEG, threads=1)
    assert one.threads == 1 and tiny.threads is None
    assert one.segment(img, "polyp").logits.tobytes() == tiny.segment(img, "polyp").logits.tobytes()


def test_write_mask_writes_what_the_cli_writes(tiny, cli, tmp_path):
    img = TINY_IMAGES / "kvasir_75x50.png"
    (masks,), _ = cli_segment(cli, tmp_path, [img], ["polyp"], model=TINY_CLIPSEG)
    r = tiny.segment(img, "polyp")
    vlsm.write_mask(tmp_path / "py.mask.png", r.masks[0])
    assert (tmp_path / "py.mask.png").read_bytes() == (tmp_path / "cli" / "kvasir_75x50.mask.png").read_bytes()
    with pytest.raises(ValueError, match="mask"):
        vlsm.write_mask(tmp_path / "x.png", r.masks)


def cli_json(cli, tmp_path, images, prompts, model):
    """`vlsm segment --json`: {(image name, prompt): record}."""
    args = ["segment", *images, "--out", tmp_path / "json", "--model", model, "--json"]
    for p in prompts:
        args += ["-p", p]
    recs = [json.loads(line) for line in cli(*args).stdout.splitlines()]
    assert len(recs) == len(images) * len(prompts)
    return {(Path(r["image"]).name, r["prompt"]): r for r in recs}


def check_presence_is_the_clis(seg, cli, tmp_path, model, images, prompts):
    recs = cli_json(cli, tmp_path, images, prompts, model)
    for img, r in zip(images, seg.segment_batch(images, prompts)):
        assert r.presence.dtype == np.float32 and r.presence.shape == (len(prompts),)
        assert r.present.dtype == np.bool_ and r.present.shape == (len(prompts),)
        for k, p in enumerate(prompts):
            rec = recs[(img.name, p)]
            assert r.presence[k] == np.float32(rec["presence"]), (img.name, p)
            assert bool(r.present[k]) == rec["present"] and r.areas[k] == rec["area"], (img.name, p)
            assert np.array_equal(r.masks[k], read_png(Path(rec["mask"])) == 255), (img.name, p)
    return recs


def test_presence_is_the_clis_json(builtin, cli, tmp_path):
    """The built-in model has no presence head: presence is the map's largest probability and
    present says whether the mask has a pixel (as `vlsm segment --json` prints them)."""
    images = [p for p in EXAMPLES if p.name.startswith(("busi", "clinicdb"))]
    prompts = ["Tumor in the breast ultrasound image.", "polyp"]
    recs = check_presence_is_the_clis(builtin, cli, tmp_path, DEFAULT_MODEL, images, prompts)
    assert {r["present"] for r in recs.values()} == {True, False}, "both outcomes are compared"
    r = builtin.segment(images[0], prompts)
    sig = 1 / (1 + np.exp(-r.logits.reshape(len(prompts), -1).astype(np.float64).max(axis=1)))
    assert np.allclose(r.presence, sig, atol=1e-6)
    assert list(r.present) == [a > 0 for a in r.areas]


def with_presence_head(tmp_path, name, weight, bias):
    """The built-in model with a presence head (`presence.weight` [1, 2C], `presence.bias` [1])."""
    dst = tmp_path / name
    shutil.copytree(DEFAULT_MODEL, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["presence"] = True
    (dst / "config.json").write_text(json.dumps(cfg))
    st = dst / "model.safetensors"
    raw = st.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    w = np.ascontiguousarray(weight, "<f4").reshape(1, 2 * cfg["channels"][-1])
    b = np.asarray([bias], "<f4")
    for key, arr in (("presence.weight", w), ("presence.bias", b)):
        header[key] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [len(data), len(data) + arr.nbytes]}
        data += arr.tobytes()
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    st.write_bytes(len(text).to_bytes(8, "little") + text + data)
    return dst


def test_presence_head_is_the_clis_and_empties_absent_masks(builtin, cli, tmp_path):
    images = [p for p in EXAMPLES if p.suffix in (".jpg", ".png")]
    prompts = [PROMPT, "polyp", "Tumor in the breast ultrasound image."]
    c = 2 * 256
    rng = np.random.default_rng(7)
    learned = with_presence_head(tmp_path, "head", rng.normal(0, 0.02, c), 1.3)
    seg = vlsm.Segmenter(learned)
    recs = check_presence_is_the_clis(seg, cli, tmp_path / "a", learned, images, prompts)
    assert {r["present"] for r in recs.values()} == {True, False}, "both outcomes are compared"

    absent = vlsm.Segmenter(with_presence_head(tmp_path, "absent", np.zeros(c), -4.0))
    kvasir = next(p for p in EXAMPLES if p.name.startswith("kvasir"))
    r, ref = absent.segment(kvasir, PROMPT), builtin.segment(kvasir, PROMPT)
    assert r.presence[0] == np.float32(1 / (1 + np.exp(4.0))) and not r.present[0]
    assert ref.areas[0] > 0 and r.areas == [0] and not r.masks.any()
    assert r.probs.tobytes() == ref.probs.tobytes() and r.logits.tobytes() == ref.logits.tobytes()
    (m,), _ = cli_segment(cli, tmp_path / "b", [kvasir], [PROMPT], model=tmp_path / "absent")
    assert not m.any()

    present = vlsm.Segmenter(with_presence_head(tmp_path, "present", np.zeros(c), 4.0))
    r = present.segment(kvasir, PROMPT)
    assert r.present[0] and np.array_equal(r.masks, ref.masks)
