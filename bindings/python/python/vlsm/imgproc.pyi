"""Type stubs for vlsm.imgproc: OpenCV-compatible image processing on numpy arrays.

Images are ``H×W`` or ``H×W×C`` arrays (C in 1-4); dtypes per function as documented. Results
are new arrays in cv2's dtype and shape. Unsupported dtypes, channel counts, flags or arguments
raise ``ValueError`` naming the argument; a non-array image raises ``TypeError``. Output-array
arguments (``dst``, ``edges``, ...) exist for cv2's argument order and must be ``None``.
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.generic]
Size = Union[Tuple[int, int], Sequence[int]]
Point = Union[Tuple[float, float], Sequence[float]]
Scalar = Union[float, Sequence[float]]

# depths
CV_8U: int
CV_8S: int
CV_16U: int
CV_16S: int
CV_32S: int
CV_32F: int
CV_64F: int

# colour conversion codes
COLOR_BGR2BGRA: int
COLOR_RGB2RGBA: int
COLOR_BGRA2BGR: int
COLOR_RGBA2RGB: int
COLOR_BGR2RGBA: int
COLOR_RGB2BGRA: int
COLOR_RGBA2BGR: int
COLOR_BGRA2RGB: int
COLOR_BGR2RGB: int
COLOR_RGB2BGR: int
COLOR_BGRA2RGBA: int
COLOR_RGBA2BGRA: int
COLOR_BGR2GRAY: int
COLOR_RGB2GRAY: int
COLOR_GRAY2BGR: int
COLOR_GRAY2RGB: int
COLOR_GRAY2BGRA: int
COLOR_GRAY2RGBA: int
COLOR_BGRA2GRAY: int
COLOR_RGBA2GRAY: int
COLOR_BGR2HSV: int
COLOR_RGB2HSV: int
COLOR_BGR2Lab: int
COLOR_RGB2Lab: int
COLOR_HSV2BGR: int
COLOR_HSV2RGB: int
COLOR_Lab2BGR: int
COLOR_Lab2RGB: int

# thresholds
THRESH_BINARY: int
THRESH_BINARY_INV: int
THRESH_TRUNC: int
THRESH_TOZERO: int
THRESH_TOZERO_INV: int
THRESH_MASK: int
THRESH_OTSU: int
THRESH_TRIANGLE: int
ADAPTIVE_THRESH_MEAN_C: int
ADAPTIVE_THRESH_GAUSSIAN_C: int

# borders
BORDER_CONSTANT: int
BORDER_REPLICATE: int
BORDER_REFLECT: int
BORDER_WRAP: int
BORDER_REFLECT_101: int
BORDER_REFLECT101: int
BORDER_DEFAULT: int
BORDER_ISOLATED: int

# interpolation
INTER_NEAREST: int
INTER_LINEAR: int
INTER_CUBIC: int
INTER_AREA: int

# morphology
MORPH_RECT: int
MORPH_CROSS: int
MORPH_ELLIPSE: int
MORPH_ERODE: int
MORPH_DILATE: int
MORPH_OPEN: int
MORPH_CLOSE: int
MORPH_GRADIENT: int
MORPH_TOPHAT: int
MORPH_BLACKHAT: int

# kmeans
KMEANS_RANDOM_CENTERS: int
KMEANS_USE_INITIAL_LABELS: int
KMEANS_PP_CENTERS: int
TERM_CRITERIA_COUNT: int
TERM_CRITERIA_MAX_ITER: int
TERM_CRITERIA_EPS: int

NORM_L2: int

def cvtColor(src: Image, code: int, dst: None = None, dstCn: int = 0) -> Image:
    """Colour conversion (the COLOR_* codes above). uint8, uint16 (gray and channel order only),
    float32 (colour in [0, 1], hue in degrees); 8-bit hue is in [0, 180)."""

def threshold(src: Image, thresh: float, maxval: float, type: int, dst: None = None) -> Tuple[float, Image]:
    """Fixed threshold on uint8/uint16/float32 (any channels), or THRESH_OTSU / THRESH_TRIANGLE
    on single-channel uint8. Returns (threshold used, image)."""

def adaptiveThreshold(
    src: Image, maxValue: float, adaptiveMethod: int, thresholdType: int, blockSize: int, C: float, dst: None = None
) -> Image:
    """Adaptive threshold of a single-channel uint8 image (THRESH_BINARY or THRESH_BINARY_INV)."""

def GaussianBlur(
    src: Image, ksize: Size, sigmaX: float, dst: None = None, sigmaY: float = 0, borderType: int = ...
) -> Image:
    """Gaussian blur (uint8, uint16, float32); ksize (w, h) odd, or (0, 0) to derive it from sigma."""

def blur(src: Image, ksize: Size, dst: None = None, anchor: Optional[Point] = None, borderType: int = ...) -> Image:
    """Normalised box filter (uint8, uint16, float32)."""

def boxFilter(
    src: Image,
    ddepth: int,
    ksize: Size,
    dst: None = None,
    anchor: Optional[Point] = None,
    normalize: bool = True,
    borderType: int = ...,
) -> Image:
    """Box filter into the source depth (ddepth -1)."""

def medianBlur(src: Image, ksize: int, dst: None = None) -> Image:
    """Median filter; ksize odd > 1 (uint16/float32: 3 or 5)."""

def filter2D(
    src: Image,
    ddepth: int,
    kernel: npt.ArrayLike,
    dst: None = None,
    anchor: Optional[Point] = None,
    delta: float = 0,
    borderType: int = ...,
) -> Image:
    """Correlation with a 2-D kernel (taken as float32), result in the source depth (ddepth -1)."""

def getGaussianKernel(ksize: int, sigma: float, ktype: int = ...) -> npt.NDArray[np.float64]:
    """The ksize×1 Gaussian kernel (CV_64F, or CV_32F)."""

def resize(
    src: Image, dsize: Optional[Size], dst: None = None, fx: float = 0, fy: float = 0, interpolation: int = ...
) -> Image:
    """Resize to dsize (w, h), or by fx, fy when dsize is None or (0, 0); INTER_NEAREST, _LINEAR,
    _CUBIC or _AREA. With fx/fy the output size is round(w·fx) × round(h·fy), and sampling uses
    that size's ratio (equal to cv2's when w·fx and h·fy are whole)."""

def getRotationMatrix2D(center: Point, angle: float, scale: float) -> npt.NDArray[np.float64]:
    """2×3 matrix rotating by angle degrees (counter-clockwise) about center, scaled by scale."""

def warpAffine(
    src: Image,
    M: npt.ArrayLike,
    dsize: Size,
    dst: None = None,
    flags: int = ...,
    borderMode: int = ...,
    borderValue: Optional[Scalar] = None,
) -> Image:
    """Affine warp (M maps source to destination; WARP_INVERSE_MAP is not supported); BORDER_CONSTANT
    (with one value for every channel) or BORDER_REPLICATE."""

def getStructuringElement(shape: int, ksize: Size, anchor: Optional[Point] = None) -> npt.NDArray[np.uint8]:
    """MORPH_RECT, MORPH_CROSS or MORPH_ELLIPSE mask of ksize (w, h), as kh×kw uint8."""

def erode(
    src: Image,
    kernel: Optional[npt.ArrayLike],
    dst: None = None,
    anchor: Optional[Point] = None,
    iterations: int = 1,
    borderType: int = ...,
    borderValue: None = None,
) -> Image:
    """Minimum over the kernel's nonzero cells (None: 3×3 rectangle), iterations times."""

def dilate(
    src: Image,
    kernel: Optional[npt.ArrayLike],
    dst: None = None,
    anchor: Optional[Point] = None,
    iterations: int = 1,
    borderType: int = ...,
    borderValue: None = None,
) -> Image:
    """Maximum over the kernel's nonzero cells (None: 3×3 rectangle), iterations times."""

def morphologyEx(
    src: Image,
    op: int,
    kernel: Optional[npt.ArrayLike],
    dst: None = None,
    anchor: Optional[Point] = None,
    iterations: int = 1,
    borderType: int = ...,
    borderValue: None = None,
) -> Image:
    """MORPH_ERODE ... MORPH_BLACKHAT (MORPH_HITMISS is not supported)."""

def Sobel(
    src: Image,
    ddepth: int,
    dx: int,
    dy: int,
    dst: None = None,
    ksize: int = 3,
    scale: float = 1,
    delta: float = 0,
    borderType: int = ...,
) -> Image:
    """Sobel derivative. uint8 src: CV_16S or CV_8U (scale 1, delta 0), CV_32F, CV_64F (scale 1);
    float32 src: -1 or CV_32F."""

def Scharr(
    src: Image, ddepth: int, dx: int, dy: int, dst: None = None, scale: float = 1, delta: float = 0, borderType: int = ...
) -> Image:
    """Scharr derivative of a uint8 image into CV_16S (or CV_8U)."""

def Laplacian(
    src: Image, ddepth: int, dst: None = None, ksize: int = 1, scale: float = 1, delta: float = 0, borderType: int = ...
) -> Image:
    """Laplacian of a uint8 image into CV_16S (or CV_8U)."""

def Canny(
    image: Image,
    threshold1: float,
    threshold2: float,
    edges: None = None,
    apertureSize: int = 3,
    L2gradient: bool = False,
) -> npt.NDArray[np.uint8]:
    """Canny edges of a single-channel uint8 image (apertureSize 3 or 5)."""

def convertScaleAbs(src: Image, dst: None = None, alpha: float = 1, beta: float = 0) -> npt.NDArray[np.uint8]:
    """saturate_uint8(|src·alpha + beta|) for uint8, uint16, int16 and float32 images."""

def cornerHarris(
    src: Image, blockSize: int, ksize: int, k: float, dst: None = None, borderType: int = ...
) -> npt.NDArray[np.float32]:
    """Harris response of a single-channel uint8 image."""

def cornerMinEigenVal(
    src: Image, blockSize: int, dst: None = None, ksize: int = 3, borderType: int = ...
) -> npt.NDArray[np.float32]:
    """Smaller eigenvalue of the gradient covariance (single-channel uint8)."""

def goodFeaturesToTrack(
    image: Image,
    maxCorners: int,
    qualityLevel: float,
    minDistance: float,
    corners: None = None,
    mask: None = None,
    blockSize: int = 3,
    useHarrisDetector: bool = False,
    k: float = 0.04,
) -> npt.NDArray[np.float32]:
    """Shi-Tomasi corners as an N×1×2 float32 array (blockSize 3, no mask, no Harris)."""

class KeyPoint:
    """A SIFT keypoint with cv2.KeyPoint's fields."""

    pt: Tuple[float, float]
    size: float
    angle: float
    response: float
    octave: int
    class_id: int
    def __init__(
        self,
        x: float = 0,
        y: float = 0,
        size: float = 0,
        angle: float = -1,
        response: float = 0,
        octave: int = 0,
        class_id: int = -1,
    ) -> None: ...

class SIFT:
    """SIFT with OpenCV's default parameters. Colour images are taken as BGR and made gray."""

    def detect(self, image: Image, mask: None = None) -> Tuple[KeyPoint, ...]:
        """Keypoints of a uint8 image."""
    def detectAndCompute(
        self, image: Image, mask: None, descriptors: None = None, useProvidedKeypoints: bool = False
    ) -> Tuple[Tuple[KeyPoint, ...], npt.NDArray[np.float32]]:
        """Keypoints and their N×128 float32 descriptors."""
    def descriptorSize(self) -> int: ...
    def descriptorType(self) -> int: ...
    def defaultNorm(self) -> int: ...

def SIFT_create(
    nfeatures: int = 0,
    nOctaveLayers: int = 3,
    contrastThreshold: float = 0.04,
    edgeThreshold: float = 10,
    sigma: float = 1.6,
    enable_precise_upscale: bool = False,
) -> SIFT:
    """A SIFT detector; only OpenCV's default parameters are implemented."""

def calcHist(
    images: Sequence[Image],
    channels: Sequence[int],
    mask: None,
    histSize: Sequence[int],
    ranges: Sequence[float],
    hist: None = None,
    accumulate: bool = False,
) -> npt.NDArray[np.float32]:
    """256-bin histogram over [0, 256) of one channel of one uint8 image (shape (256,), as cv2 5)."""

def equalizeHist(src: Image, dst: None = None) -> npt.NDArray[np.uint8]:
    """Histogram equalisation of a single-channel uint8 image."""

def LUT(src: Image, lut: npt.NDArray[np.uint8], dst: None = None) -> npt.NDArray[np.uint8]:
    """Table lookup of a uint8 image through a 256-entry uint8 table."""

def connectedComponents(
    image: Image, labels: None = None, connectivity: int = 8, ltype: int = ...
) -> Tuple[int, npt.NDArray[np.int32]]:
    """Labels of the nonzero pixels of a single-channel uint8 image, numbered as cv2 does."""

def connectedComponentsWithStats(
    image: Image,
    labels: None = None,
    stats: None = None,
    centroids: None = None,
    connectivity: int = 8,
    ltype: int = ...,
) -> Tuple[int, npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """Labels, N×5 stats (left, top, width, height, area) and N×2 centroids."""

def kmeans(
    data: npt.NDArray[np.float32],
    K: int,
    bestLabels: Optional[npt.NDArray[np.int32]],
    criteria: Tuple[int, int, float],
    attempts: int,
    flags: int,
    centers: None = None,
) -> Tuple[float, npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """k-means of N×dims float32 samples: (compactness, N×1 labels, K×dims centres).
    KMEANS_PP_CENTERS, KMEANS_RANDOM_CENTERS (own fixed-seed generator: cv2's RNG cannot be
    followed) or KMEANS_USE_INITIAL_LABELS (then the same clustering as cv2 while no cluster
    empties)."""
