"""vlsm: language-guided medical image segmentation, from Python.

The models of the medvlsm paper (CLIPSeg, CRIS, BiomedCLIPSeg) and a built-in model, run by
the Rust library behind the ``vlsm`` command line: no torch, CPU first.

>>> import vlsm
>>> seg = vlsm.Segmenter()                      # the built-in model
>>> r = seg.segment(image, ["polyp", "instrument"])
>>> r.masks.shape                               # (2, H, W), bool

- :class:`Segmenter` / :class:`SegmentResult`: ``vlsm segment`` on numpy arrays and files.
- :func:`eval`, :func:`train`, :func:`prompts`: ``vlsm eval``, ``vlsm train``, ``vlsm prompts``.
- ``vlsm.imgproc``: the classical image operations under OpenCV's names.
"""

from ._vlsm import (
    Segmenter,
    SegmentResult,
    __version__,
    default_model_dir,
    eval,
    prompts,
    train,
    write_mask,
)

__all__ = [
    "Segmenter",
    "SegmentResult",
    "__version__",
    "default_model_dir",
    "eval",
    "imgproc",
    "prompts",
    "train",
    "write_mask",
]


def __getattr__(name: str):
    # `vlsm.imgproc` loads on first use, so `import vlsm` stays quick.
    if name == "imgproc":
        import importlib

        return importlib.import_module(".imgproc", __name__)
    raise AttributeError(f"module 'vlsm' has no attribute {name!r}")
