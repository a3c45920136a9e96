"""vlsm.prompts, vlsm.eval and vlsm.train against `vlsm prompts`, `vlsm eval` and `vlsm train`:
the same files and figures; their errors; Ctrl-C during training."""

import _thread
import csv
import json
import shutil
import signal
import threading

import numpy as np
import pytest

import vlsm
from conftest import REPO, TINY_CLIPSEG, write_png


def copy(ds, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(ds, dst)
    return dst


def test_prompts_writes_the_clis_anns(squares, cli, tmp_path):
    a, b = copy(squares, tmp_path, "a"), copy(squares, tmp_path, "b")
    counts = vlsm.prompts(a, "square", split="60/20/20", seed=3)
    assert counts == {"train": 6, "val": 2, "test": 2}
    cli("prompts", b, "--class", "square", "--split", "60/20/20", "--seed", "3")
    for s in ("train", "val", "test"):
        assert (a / "anns" / f"{s}.json").read_bytes() == (b / "anns" / f"{s}.json").read_bytes()
    assert vlsm.prompts(a, "square", split=(60, 20, 20), seed=3) == counts


def test_prompts_errors(squares, cli, tmp_path):
    with pytest.raises(ValueError) as e:
        vlsm.prompts(squares, "square", split="80/20")
    r = cli("prompts", squares, "--class", "square", "--split", "80/20", check=False)
    assert r.stderr.strip() == f"error: {e.value}"
    with pytest.raises(FileNotFoundError):
        vlsm.prompts(tmp_path / "none", "square")
    with pytest.raises(TypeError, match="split"):
        vlsm.prompts(squares, "square", split=3)


@pytest.fixture(scope="module")
def prompted(squares, tmp_path_factory):
    ds = tmp_path_factory.mktemp("prompted") / "squares"
    shutil.copytree(squares, ds)
    vlsm.prompts(ds, "square", split="60/20/20", seed=3)
    return ds


def test_eval_returns_the_clis_metrics(prompted, cli, tmp_path):
    got = vlsm.eval(prompted, tmp_path / "py", model=TINY_CLIPSEG, split="test", prompts=["p1", "p3"])
    cli("eval", "--model", TINY_CLIPSEG, "--data", prompted, "--split", "test", "--prompt", "p1", "--prompt", "p3",
        "--out", tmp_path / "cli")
    want = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert got == want
    assert json.loads((tmp_path / "py" / "metrics.json").read_text()) == want
    assert (tmp_path / "py" / "per_image.csv").read_bytes() == (tmp_path / "cli" / "per_image.csv").read_bytes()
    assert set(got["prompts"]) == {"p1", "p3"} and got["prompts"]["p1"]["pooled"]["n"] == 2


def test_eval_errors(prompted, tmp_path):
    with pytest.raises(ValueError, match="all_prompts"):
        vlsm.eval(prompted, tmp_path, model=TINY_CLIPSEG)
    with pytest.raises(FileNotFoundError):
        vlsm.eval(tmp_path / "none", tmp_path, model=TINY_CLIPSEG, prompts="p1")
    with pytest.raises(ValueError, match="threshold"):
        vlsm.eval(prompted, tmp_path, model=TINY_CLIPSEG, prompts="p1", threshold=2.0)


TINY_VIT = REPO / "tests/fixtures/vit/tiny_cls"


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    """DATA/test/<class>/*.png for two of the tiny ViT's labels (and a stray train/ split)."""
    root = tmp_path_factory.mktemp("cls") / "colours"
    rng = np.random.default_rng(5)
    for split, n in (("test", 5), ("train", 2)):
        for k, label in enumerate(("polyp", "ulcer")):
            for i in range(n):
                img = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
                img[..., k] //= 4
                write_png(root / split / label / f"{i}.png", img)
    return root


def test_eval_on_a_classifier_returns_the_clis_metrics(class_folders, cli, tmp_path):
    got = vlsm.eval(class_folders, tmp_path / "py", model=TINY_VIT, batch=3)
    r = cli("eval", "--model", TINY_VIT, "--data", class_folders, "--batch", "3", "--out", tmp_path / "cli")
    want = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert got == want
    assert (tmp_path / "py" / "metrics.json").read_bytes() == (tmp_path / "cli" / "metrics.json").read_bytes()
    assert got["data"] == str(class_folders / "test") and got["classes"][0] == "polyp"
    assert sum(map(sum, got["confusion"])) == 10 and f"({10} images)" in r.stdout
    # Prompts mean nothing to a classifier, as to `vlsm eval`; the train split is another folder.
    train = vlsm.eval(class_folders, tmp_path / "train", model=TINY_VIT, split="train", prompts="p1")
    assert train["data"] == str(class_folders / "train") and sum(map(sum, train["confusion"])) == 4
    # No DATA/<split>: DATA itself holds the class folders.
    assert vlsm.eval(class_folders / "test", tmp_path / "flat", model=TINY_VIT, split="val") == {
        **got, "data": str(class_folders / "test")
    }


def test_eval_on_a_classifier_errors_are_the_clis(class_folders, cli, tmp_path):
    with pytest.raises(ValueError) as e:
        vlsm.eval([class_folders, class_folders], tmp_path, model=TINY_VIT)
    r = cli("eval", "--model", TINY_VIT, "--data", class_folders, class_folders, "--out", tmp_path, check=False)
    assert r.returncode != 0 and r.stderr.strip() == f"error: {e.value}"
    stray = tmp_path / "stray"
    shutil.copytree(class_folders / "test", stray)
    (stray / "kitten").mkdir()
    with pytest.raises(ValueError, match="kitten"):
        vlsm.eval(stray, tmp_path / "o", model=TINY_VIT)
    with pytest.raises(FileNotFoundError):
        vlsm.eval(tmp_path / "none", tmp_path / "o", model=TINY_VIT)


def config(tmp_path, ds, out, epochs):
    p = tmp_path / f"{out}.toml"
    p.write_text(
        f'output_dir = "{tmp_path / out}"\n[model]\nkind = "clipseg"\ndir = "{TINY_CLIPSEG}"\n'
        f'[data]\ndatasets = ["{ds}"]\nprompts = ["p1"]\nimage_size = 32\n'
        f"[train]\nepochs = {epochs}\nmin_epochs = {epochs}\nbatch_size = 3\nlr = 1e-2\n"
    )
    return p


def figures(run):
    """metrics.csv without the seconds column."""
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    return [{k: v for k, v in r.items() if "second" not in k and k != "time"} for r in rows]


def test_train_is_the_clis_run(prompted, cli, tmp_path):
    s = vlsm.train(config(tmp_path, prompted, "py", 2))
    cli("train", "--config", config(tmp_path, prompted, "cli", 2))
    assert s["finished"] and len(s["history"]) == 2 and s["run_dir"] == str(tmp_path / "py")
    assert figures(tmp_path / "py") == figures(tmp_path / "cli")
    assert (tmp_path / "py/best/model.safetensors").is_file()
    assert s["best_val_dice"] == max(h["val_dice"] for h in s["history"])
    r = vlsm.Segmenter(tmp_path / "py/best").segment(prompted / "images/0.png", "square")
    assert r.masks.shape == (1, 30, 40)
    # Errors of the run itself (here: a run already in output_dir) are RuntimeErrors.
    with pytest.raises(RuntimeError, match="resume"):
        vlsm.train(config(tmp_path, prompted, "py", 2))


def test_train_errors(prompted, tmp_path):
    with pytest.raises(FileNotFoundError):
        vlsm.train(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text(config(tmp_path, prompted, "x", 2).read_text() + "bogus_key = 1\n")
    with pytest.raises(ValueError, match="bogus_key"):
        vlsm.train(bad)
    with pytest.raises(ValueError, match="lr"):
        vlsm.train(config(tmp_path, prompted, "y", 2), lr=-1.0)


def test_ctrl_c_stops_training_with_the_checkpoint_intact(prompted, tmp_path):
    # Python's own Ctrl-C handler, whatever the runner inherited: a shell that starts the suite in
    # the background sets SIGINT to SIG_IGN, and then interrupt_main() does nothing (that, not a
    # race, is why all the epochs once ran before the "interrupt").
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ctrl_c_run(prompted, tmp_path)
    finally:
        signal.signal(signal.SIGINT, old)


def ctrl_c_run(prompted, tmp_path):
    # More epochs than can run before the interrupt lands (a tiny epoch takes milliseconds).
    epochs = 2000
    cfg = config(tmp_path, prompted, "run", epochs)
    run = tmp_path / "run"

    def interrupt_after_first_epoch():
        # Wait for a finished epoch's checkpoint, then press Ctrl-C.
        for _ in range(6000):
            if (run / "last").is_dir():
                break
            threading.Event().wait(0.05)
        _thread.interrupt_main()

    t = threading.Thread(target=interrupt_after_first_epoch)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        vlsm.train(cfg)
    t.join()
    done = len(figures(run))
    assert 1 <= done < epochs
    # The checkpoint loads and the run continues from it.
    text = cfg.read_text().replace(f"epochs = {epochs}\nmin_epochs = {epochs}", f"epochs = {done + 1}\nmin_epochs = {done + 1}")
    cfg.write_text(text)
    s = vlsm.train(cfg, resume=True)
    assert s["finished"] and len(s["history"]) == done + 1
