"""Type stubs of the native module ``vlsm._vlsm`` (re-exported by ``vlsm``)."""

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
#: A uint8 array H×W×3 (RGB) or H×W / H×W×1 (grey), any strides; or an image file path.
ImageLike = Union[npt.NDArray[np.uint8], PathLike]

class SegmentResult:
    """The outputs for one image, one row per prompt."""

    #: bool N×H×W: the pixels ``vlsm segment`` writes as 255 in ``<stem>.mask.png``.
    masks: npt.NDArray[np.bool_]
    #: float32 N×H×W: sigmoid of the logits bilinearly resized to the image (what masks threshold).
    probs: npt.NDArray[np.float32]
    #: float32 N×h×w at the model's resolution: what ``vlsm segment --logits`` writes.
    logits: npt.NDArray[np.float32]
    #: Mask pixels per prompt.
    areas: List[int]
    #: float32 N: whether each prompt's target is in the image (``vlsm segment --json``'s
    #: "presence"): the presence head's probability, or without a head the largest probability
    #: of the map at model resolution.
    presence: npt.NDArray[np.float32]
    #: bool N: ``vlsm segment --json``'s "present"; an absent target's mask is empty.
    present: npt.NDArray[np.bool_]
    #: The probability threshold the masks used.
    threshold: float
    #: The prompts, in the order of the rows.
    prompts: List[str]
    def __len__(self) -> int: ...

class Segmenter:
    """A model loaded once, segmenting images × prompts as ``vlsm segment`` does.

    ``model``: a model directory (any kind ``vlsm segment --model`` takes), or None for the
    built-in model. ``threads``: the most worker threads this segmenter's model uses (default:
    the process-wide pool, all cores, or ``RAYON_NUM_THREADS``). The model runs with the GIL
    released; one segmenter can be shared by several Python threads.

    Raises FileNotFoundError (no such directory), ValueError (not a model directory, a bad
    file in it) with the CLI's one-line message.
    """

    def __init__(self, model: Optional[PathLike] = None, threads: Optional[int] = None) -> None: ...
    def segment(
        self, image: ImageLike, prompts: Union[str, Sequence[str]], threshold: Optional[float] = None
    ) -> SegmentResult:
        """Segments one image; the image encoder runs once for all the prompts.

        Raises ValueError for an array of the wrong dtype or shape, an empty prompt list, a
        threshold outside 0..1 or an unreadable image file; FileNotFoundError for a missing file.
        """
    def segment_batch(
        self,
        images: Sequence[ImageLike],
        prompts: Union[str, Sequence[str]],
        threshold: Optional[float] = None,
    ) -> List[SegmentResult]:
        """Segments several images with the same prompts, four at a time through the encoder."""
    @property
    def model_dir(self) -> Path: ...
    @property
    def kind(self) -> str:
        """The architecture: textunet, unet, clipseg, biomedclipseg or cris."""
    @property
    def default_threshold(self) -> float: ...
    @property
    def uses_text(self) -> bool:
        """False for the text-free UNet (its prompts are ignored)."""
    @property
    def threads(self) -> Optional[int]: ...

def eval(
    data: Union[PathLike, Sequence[PathLike]],
    out: PathLike,
    *,
    model: Optional[PathLike] = None,
    split: str = "test",
    prompts: Optional[Union[str, Sequence[str]]] = None,
    all_prompts: bool = False,
    threshold: Optional[float] = None,
    seed: int = 42,
    batch: int = 4,
    worst: int = 12,
    tta: str = "none",
    post: str = "none",
    ablation: bool = False,
) -> Dict[str, Any]:
    """``vlsm eval``: returns metrics.json's content.

    A segmentation model: writes metrics.json, per_image.csv, masks and report.html into ``out``
    (``prompts`` per key: pooled and per-dataset Dice, IoU, HD95; ``results`` per image).
    ``tta`` ("none" or "flip"), ``post`` ("none" or a comma-separated list of "lcc", "fill") and
    ``ablation`` are ``vlsm eval``'s ``--tta``, ``--post`` and ``--ablation``.

    An image classifier (ViT or Swin): ``data`` is one folder of class folders,
    ``DATA/<split>/<class>/*`` or ``DATA/<class>/*``; writes metrics.json with ``model``,
    ``data``, ``accuracy``, ``classes`` and ``confusion`` (rows: true class); the segmentation
    options are ignored."""

def train(
    config_path: PathLike, resume: bool = False, *, lr: Optional[float] = None, random_decoder: bool = False
) -> Dict[str, Any]:
    """``vlsm train --config``: the same progress on stderr; returns ``run_dir``,
    ``best_val_dice``, ``best_epoch``, ``stopped_early``, ``finished`` and ``history``.
    Ctrl-C stops before the next step with the last epoch's checkpoint intact."""

def prompts(
    dataset: PathLike,
    class_name: str,
    *,
    split: Optional[Union[str, Tuple[int, int, int]]] = None,
    seed: int = 42,
) -> Dict[str, int]:
    """``vlsm prompts DATASET --class NAME``: writes anns/{train,val,test}.json with prompts
    p0–p9; returns the records per split."""

def default_model_dir() -> Path:
    """The built-in model's directory."""

def write_mask(path: PathLike, mask: npt.NDArray[Any]) -> None:
    """Writes a 2-D mask (bool, or uint8 with non-zero as foreground) as a 0/255 PNG,
    atomically, as ``vlsm segment`` writes ``<stem>.mask.png``."""

def _panic_for_tests() -> None: ...
