"""OpenCV-compatible image processing on numpy arrays (``cv2`` names, argument orders, flags).

Replace ``cv2`` by ``vlsm.imgproc`` in code that uses the functions below and get the same
results, byte for byte for 8-bit images except where noted (see ``docs/python.md``):

* ``resize`` with ``INTER_CUBIC`` on 8-bit images with 1, 3 or 4 channels: cv2 uses IPP there,
  whose rounding leaves a few per cent of values 1 off.
* ``warpAffine`` with ``INTER_CUBIC``: a few pixels 1 off.
* ``cvtColor`` to Lab on float32 images: cv2 interpolates in a table (within 0.4).
* ``cornerHarris`` / ``cornerMinEigenVal``: float results within 1e-3 / 1e-4 relative.
* ``kmeans``: the random seeding cannot follow cv2's RNG; with ``KMEANS_USE_INITIAL_LABELS``
  the clustering is the same, otherwise compactness is comparable, not equal.
* ``SIFT``: keypoints and descriptors agree with cv2's closely but not bit for bit.

Arrays may be non-contiguous, read-only or big-endian; results are new arrays in cv2's dtype,
``H×W`` for one channel and ``H×W×C`` otherwise. The GIL is released during computation.
Unsupported dtypes, channel counts, flags or arguments raise ``ValueError`` naming the argument;
a non-array where an image is expected raises ``TypeError``.
"""
from vlsm._vlsm.imgproc import *  # noqa: F401,F403
from vlsm._vlsm.imgproc import KeyPoint, SIFT  # noqa: F401

# ---- depths (cv2.CV_*) ----
CV_8U = 0
CV_8S = 1
CV_16U = 2
CV_16S = 3
CV_32S = 4
CV_32F = 5
CV_64F = 6

# ---- cvtColor codes (those supported) ----
COLOR_BGR2BGRA = 0
COLOR_RGB2RGBA = 0
COLOR_BGRA2BGR = 1
COLOR_RGBA2RGB = 1
COLOR_BGR2RGBA = 2
COLOR_RGB2BGRA = 2
COLOR_RGBA2BGR = 3
COLOR_BGRA2RGB = 3
COLOR_BGR2RGB = 4
COLOR_RGB2BGR = 4
COLOR_BGRA2RGBA = 5
COLOR_RGBA2BGRA = 5
COLOR_BGR2GRAY = 6
COLOR_RGB2GRAY = 7
COLOR_GRAY2BGR = 8
COLOR_GRAY2RGB = 8
COLOR_GRAY2BGRA = 9
COLOR_GRAY2RGBA = 9
COLOR_BGRA2GRAY = 10
COLOR_RGBA2GRAY = 11
COLOR_BGR2HSV = 40
COLOR_RGB2HSV = 41
COLOR_BGR2Lab = 44
COLOR_RGB2Lab = 45
COLOR_HSV2BGR = 54
COLOR_HSV2RGB = 55
COLOR_Lab2BGR = 56
COLOR_Lab2RGB = 57

# ---- thresholds ----
THRESH_BINARY = 0
THRESH_BINARY_INV = 1
THRESH_TRUNC = 2
THRESH_TOZERO = 3
THRESH_TOZERO_INV = 4
THRESH_MASK = 7
THRESH_OTSU = 8
THRESH_TRIANGLE = 16
ADAPTIVE_THRESH_MEAN_C = 0
ADAPTIVE_THRESH_GAUSSIAN_C = 1

# ---- borders ----
BORDER_CONSTANT = 0
BORDER_REPLICATE = 1
BORDER_REFLECT = 2
BORDER_WRAP = 3
BORDER_REFLECT_101 = 4
BORDER_REFLECT101 = 4
BORDER_DEFAULT = 4
BORDER_ISOLATED = 16

# ---- interpolation ----
INTER_NEAREST = 0
INTER_LINEAR = 1
INTER_CUBIC = 2
INTER_AREA = 3

# ---- morphology ----
MORPH_RECT = 0
MORPH_CROSS = 1
MORPH_ELLIPSE = 2
MORPH_ERODE = 0
MORPH_DILATE = 1
MORPH_OPEN = 2
MORPH_CLOSE = 3
MORPH_GRADIENT = 4
MORPH_TOPHAT = 5
MORPH_BLACKHAT = 6

# ---- kmeans ----
KMEANS_RANDOM_CENTERS = 0
KMEANS_USE_INITIAL_LABELS = 1
KMEANS_PP_CENTERS = 2
TERM_CRITERIA_COUNT = 1
TERM_CRITERIA_MAX_ITER = 1
TERM_CRITERIA_EPS = 2

# ---- norms ----
NORM_L2 = 4

__all__ = [n for n in dir() if not n.startswith("_")]
