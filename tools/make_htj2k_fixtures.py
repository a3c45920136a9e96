"""Writes tests/fixtures/dicom/htj2k/: small DICOM files in the HTJ2K transfer syntaxes (pydicom's
corpus has none) and what pydicom decodes from them, for vlsm's DICOM reader tests
(crates/vlsm/tests/it/io_dicom.rs).

The codestreams are encoded by OpenJPH (imagecodecs.htj2k_encode), a different codec from the
OpenJPEG that decodes them in vlsm and in pydicom (pylibjpeg-openjpeg, pydicom's only HTJ2K
plugin). expected.json holds, per file, the summary tools/dicom_corpus_summary.py writes (shape,
sum, index-weighted sum, samples) of pydicom's pixel_array.

    python -m venv /work/pyenv/h22 --system-site-packages   # from the shared venv
    /work/pyenv/h22/bin/pip install imagecodecs pylibjpeg pylibjpeg-openjpeg
    /work/pyenv/h22/bin/python tools/make_htj2k_fixtures.py

Pins: tools/requirements.txt (pydicom, numpy; imagecodecs, pylibjpeg, pylibjpeg-openjpeg).
"""
import json
import os
import sys

import imagecodecs
import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dicom_corpus_summary import summary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "dicom", "htj2k")
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"


def write(name, ds, stream, ts, original=None):
    assert b"\xff\x50" in stream[:200], "no CAP marker: not an HTJ2K codestream"
    ds = ds.copy()
    ds.file_meta = ds.file_meta.copy()
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate([stream])
    ds["PixelData"].VR = "OB"
    ds.set_original_encoding(False, True)
    path = os.path.join(OUT, name)
    ds.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    a = back.pixel_array
    if original is not None:
        assert np.array_equal(a, original), name
    e = {"file": name, "transfer_syntax": ts, "lossy": ts == HTJ2K, "pydicom": "decoded"}
    e["photometric"] = str(back.PhotometricInterpretation)
    e.update(summary(a))
    return e


def main():
    os.makedirs(OUT, exist_ok=True)
    mr = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    px = mr.pixel_array  # 64x64 int16
    out = []
    out.append(write("MR_small_htj2k_lossless.dcm", mr, imagecodecs.htj2k_encode(px, reversible=True), HTJ2K_LOSSLESS, px))
    # An 8-bit RGB image, coded irreversibly (9/7 wavelet, ICT): lossy.
    sc = pydicom.dcmread(pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm"))  # 2 x 100x100 RGB
    rgb = np.ascontiguousarray(sc.pixel_array[0, ::2, ::2])
    del sc.NumberOfFrames
    sc.Rows, sc.Columns = rgb.shape[:2]
    sc.PhotometricInterpretation = "YBR_ICT"
    sc.LossyImageCompression = "01"
    out.append(write("SC_rgb_htj2k_lossy.dcm", sc, imagecodecs.htj2k_encode(rgb, level=30, reversible=False), HTJ2K))
    # 8-bit grey, lossless RPCL ordering.
    grey = (px.astype(np.int32) * 255 // max(int(px.max()), 1)).astype(np.uint8)
    g = mr.copy()
    g.BitsAllocated = g.BitsStored = 8
    g.HighBit = 7
    g.PixelRepresentation = 0
    for k in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if k in g:
            del g[k]
    out.append(write("MR_small_htj2k_rpcl_u8.dcm", g, imagecodecs.htj2k_encode(grey, reversible=True), HTJ2K_LOSSLESS_RPCL, grey))
    doc = {
        "pydicom": pydicom.__version__,
        "imagecodecs": imagecodecs.__version__,
        "openjph": imagecodecs.htj2k_version(),
        "files": out,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    for e in out:
        print(e["file"], e["shape"], e["dtype"], e["photometric"], os.path.getsize(os.path.join(OUT, e["file"])), "bytes")


if __name__ == "__main__":
    main()
