"""Records what pydicom decodes from its own test corpus, for vlsm's DICOM reader tests.

For every file under pydicom's data/test_files (only the ones installed locally; the ones
pydicom downloads on demand are not fetched) that has Pixel Data, writes to
tests/fixtures/dicom/pydicom_corpus.json: the transfer syntax, whether pydicom (with the
optional decoders installed here: Pillow, pyjpegls) decodes it, and a summary of the decoded
array (pixel_array, before any rescale): shape, sum, an index-weighted sum (catches reordered
pixels), min, max, and 64 samples at evenly spaced flat indices (for lossy syntaxes, compared
within a tolerance). With --copy, the small files named in SMALL are copied to
tests/fixtures/dicom/corpus/ (pydicom's test files README: "no restriction on using any of
these files"; pydicom is MIT-licensed).

Usage: /work/pyenv/venv/bin/python tools/dicom_corpus_summary.py [--copy] [--json PATH]
Pins: tools/requirements.txt (pydicom 3.0.2, numpy, pillow, pyjpegls).
"""
import glob
import json
import os
import shutil
import sys
import warnings

import numpy as np
import pydicom

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "dicom")
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"}
# A handful of small files covering the syntaxes vlsm decodes.
SMALL = [
    "MR_small.dcm",  # explicit VR LE, 16-bit signed
    "MR_small_implicit.dcm",  # implicit VR LE
    "MR_small_bigendian.dcm",  # explicit VR BE
    "rtdose_rle.dcm",  # RLE, 15 frames, 32-bit
    "image_dfl.dcm",  # deflated
    "MR_small_RLE.dcm",  # RLE 16-bit
    "SC_rgb_rle_2frame.dcm",  # RLE RGB, 2 frames
    "SC_rgb_small_odd_jpeg.dcm",  # JPEG baseline RGB (YBR_FULL_422)
    "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG baseline, RGB with Adobe APP14 (no colour transform)
    "SC_jpeg_no_color_transform.dcm",  # JPEG baseline, RGB without markers
    "liver_expb_1frame.dcm",  # 1 bit allocated, big endian
    "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422, converted to RGB
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless, 16-bit signed
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless, 8-bit
    "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless, 16-bit
    "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS RGB, line interleaved
    "SC_rgb_jls_lossy_sample.dcm",  # JPEG-LS RGB, sample interleaved
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless, 16-bit signed
    "693_J2KI.dcm",  # JPEG 2000 lossy, 512x512
    "JPEG2000.dcm",  # JPEG 2000 lossy, 1024x256
    "SC_rgb_gdcm_KY.dcm",  # JPEG 2000 lossy RGB
    "SC_rgb_jpeg.dcm",  # JPEG baseline, short Adobe APP14 (no transform byte): samples as coded
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline, YBR_FULL_422 converted with pydicom's arithmetic
]


def summary(a):
    flat = a.astype(np.int64).ravel() if a.dtype.kind in "iub" else a.astype(np.float64).ravel()
    n = flat.size
    w = (np.arange(n, dtype=np.int64) % 1009) + 1
    idx = np.linspace(0, n - 1, num=min(64, n)).round().astype(np.int64)
    return {
        "shape": list(a.shape),
        "dtype": str(a.dtype),
        "sum": int(flat.sum()),
        "wsum": int((flat * w).sum()),
        "min": int(flat.min()),
        "max": int(flat.max()),
        "sample_index": idx.tolist(),
        "sample": flat[idx].tolist(),
    }


def main():
    d = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    files = sorted(f for f in glob.glob(os.path.join(d, "**", "*"), recursive=True) if os.path.isfile(f))
    out = []
    for f in files:
        rel = os.path.relpath(f, d)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(f, force=True)
        except Exception:
            continue
        if "PixelData" not in ds:
            continue
        meta = getattr(ds, "file_meta", None)
        ts = str(getattr(meta, "TransferSyntaxUID", "")) if meta is not None else ""
        e = {"file": rel, "transfer_syntax": ts, "lossy": ts in LOSSY}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = ds.pixel_array
            e["pydicom"] = "decoded"
            e["photometric"] = str(ds.get("PhotometricInterpretation", ""))
            e.update(summary(a))
        except Exception as ex:
            e["pydicom"] = "refused: " + " ".join(str(ex).split())[:200]
        out.append(e)
    os.makedirs(OUT, exist_ok=True)
    doc = {"pydicom": pydicom.__version__, "numpy": np.__version__, "files": out}
    doc["decoders"] = {
        m: getattr(__import__(m), "__version__", "?")
        for m in ("PIL", "jpeg_ls", "pylibjpeg", "openjpeg", "libjpeg")
        if __import__("importlib").util.find_spec(m)
    }
    # --json PATH: write the summary elsewhere (a dev run with other decoders installed, compared
    # by the ignored test with VLSM_PYDICOM_CORPUS_JSON=PATH).
    path = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else os.path.join(OUT, "pydicom_corpus.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    if "--copy" in sys.argv:
        os.makedirs(os.path.join(OUT, "corpus"), exist_ok=True)
        for name in SMALL:
            shutil.copyfile(os.path.join(d, name), os.path.join(OUT, "corpus", name))
    print(len(out), "files with pixel data,", sum(e["pydicom"] == "decoded" for e in out), "decoded by pydicom")


if __name__ == "__main__":
    main()
