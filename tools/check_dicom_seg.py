"""Checks vlsm's DICOM SEG golden (tests/fixtures/dicom/seg/good.seg.dcm) with pydicom and highdicom.

The golden is vlsm's SEG over tests/fixtures/dicom/series/good/ with two segments: "bright"
(rescaled value > 500) and "left columns" (column < 3), as the Rust test
io_dicom::dicom_seg_matches_golden_and_reads_back builds it. This script recomputes the masks
from tools/make_dicom_series_fixtures.py's expected.json and checks: the SOP class, segment
labels, frame count, the referenced series/instances and Frame of Reference, per-frame plane
positions against the source slices, and the mask volume highdicom reconstructs
(get_volume / get_pixels_by_source_instance) against the expected masks.

Usage: /work/pyenv/venv/bin/python tools/check_dicom_seg.py   (pydicom 3.0.2, highdicom 0.28.2)
"""
import glob
import json
import os
import sys

import numpy as np
import pydicom
import highdicom as hd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FX = os.path.join(ROOT, "tests", "fixtures", "dicom")


def main():
    exp = json.load(open(os.path.join(FX, "series", "expected.json")))
    nx, ny, nz = exp["dims"]
    vals = np.array(exp["values"]).reshape(nz, ny, nx)
    want = {
        "bright": (vals > 500).astype(np.uint8),
        "left columns": np.broadcast_to((np.arange(nx) < 3).astype(np.uint8), (nz, ny, nx)),
    }
    path = os.path.join(FX, "seg", "good.seg.dcm")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", ds.SOPClassUID
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert int(ds.NumberOfFrames) == 2 * nz
    srcs = {}
    for f in sorted(glob.glob(os.path.join(FX, "series", "good", "IM*"))):
        s = pydicom.dcmread(f)
        srcs[s.SOPInstanceUID] = s
    assert ds.FrameOfReferenceUID == next(iter(srcs.values())).FrameOfReferenceUID
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == next(iter(srcs.values())).SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == set(srcs)
    # Per-frame positions equal the referenced source slice's position.
    for fg in ds.PerFrameFunctionalGroupsSequence:
        src_uid = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        pos = [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(pos, [float(v) for v in srcs[src_uid].ImagePositionPatient], atol=1e-5), (pos, src_uid)

    seg = hd.seg.segread(path)
    labels = [seg.get_segment_description(i).SegmentLabel for i in seg.segment_numbers]
    assert labels == ["bright", "left columns"], labels
    # Masks by source instance, in the geometric order of expected.json.
    order = exp["sop_order"]
    px = seg.get_pixels_by_source_instance(source_sop_instance_uids=order, segment_numbers=[1, 2])
    for s, name in enumerate(["bright", "left columns"]):
        got = px[..., s]
        assert got.shape == (nz, ny, nx), got.shape
        assert np.array_equal(got, want[name]), name
    vol = seg.get_volume(combine_segments=False)
    assert vol.spatial_shape == (nz, ny, nx), vol.spatial_shape
    check_enhanced(exp, want)
    print(f"OK: {path}: {ds.NumberOfFrames} frames, segments {labels}, {len(srcs)} source instances referenced;"
          f" highdicom {hd.__version__} reads masks equal to the expected ones; volume {vol.spatial_shape}")


def check_enhanced(exp, want):
    """enhanced.seg.dcm: the SEG over series/enhanced/enhanced.dcm (frames in shuffled order)."""
    nx, ny, nz = exp["dims"]
    path = os.path.join(FX, "seg", "enhanced.seg.dcm")
    src = pydicom.dcmread(os.path.join(FX, "series", "enhanced", "enhanced.dcm"))
    seg = hd.seg.segread(path)
    ds = pydicom.dcmread(path)
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    refd = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert [r.ReferencedSOPInstanceUID for r in refd] == [src.SOPInstanceUID]
    order = exp["enhanced_frame_order"]  # source frame f (0-based) holds slice order[f]
    px = seg.get_pixels_by_source_frame(
        source_sop_instance_uid=src.SOPInstanceUID,
        source_frame_numbers=list(range(1, nz + 1)),
        segment_numbers=[1, 2],
    )
    for s, name in enumerate(["bright", "left columns"]):
        for f in range(nz):
            assert np.array_equal(px[f, ..., s], want[name][order[f]]), (name, f)
    print(f"OK: {path}: masks by source frame number equal the expected ones")


if __name__ == "__main__":
    sys.exit(main())
