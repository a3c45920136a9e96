"""vlsm: language-guided medical image segmentation, from Python."""
from . import imgproc

__all__ = ["imgproc"]
