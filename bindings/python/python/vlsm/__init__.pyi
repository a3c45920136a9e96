from . import imgproc as imgproc
from ._vlsm import (
    Segmenter as Segmenter,
    SegmentResult as SegmentResult,
    __version__ as __version__,
    default_model_dir as default_model_dir,
    eval as eval,
    prompts as prompts,
    train as train,
    write_mask as write_mask,
)
