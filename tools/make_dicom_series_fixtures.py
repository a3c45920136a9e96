"""Synthetic DICOM series for vlsm's series reader tests (tests/fixtures/dicom/series/).

A 6x4x5 volume (columns x rows x slices) with an oblique orientation and anisotropic spacing
(0.7 mm between columns, 0.9 mm between rows, 2.5 mm between slices), int16 stored values,
RescaleSlope 2 and a RescaleIntercept that differs per slice, written:
  good/        one file per slice, names shuffled (sorting must use the geometry), implicit and
               explicit VR mixed, plus a non-image DICOM file (skipped) in a subfolder;
  enhanced/    one Enhanced CT multi-frame file, frames in shuffled order, per-frame positions;
  missing/     slice 2 left out;
  duplicate/   slice 3 written twice under two names;
  mixed_size/  one slice 6x3;
  mixed_orient/ one slice with a different orientation;
  two_series/  good/ and a second series.
expected.json holds the volume (rescaled, x fastest), the LPS affine and the order of the
SOP Instance UIDs along the slice axis, computed here from the ground truth.

Usage: /work/pyenv/venv/bin/python tools/make_dicom_series_fixtures.py   (pydicom 3.0.2, numpy)
"""
import json
import os
import shutil

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "dicom", "series")
NX, NY, NZ = 6, 4, 5
DC, DR, DZ = 0.7, 0.9, 2.5
UIDP = "1.2.826.0.1.3680043.10.1187."  # a fixed prefix: fixtures are reproducible


def rot(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


R = rot(0.3, -0.2, 0.5)
ROW, COL, NORMAL = R[:, 0], R[:, 1], R[:, 2]  # row direction (increasing column), column direction, normal
ORIGIN = np.array([-40.5, 12.25, 70.0])
rng = np.random.default_rng(22)
STORED = rng.integers(-300, 1200, size=(NZ, NY, NX)).astype(np.int16)
INTERCEPT = [-1024.0 + 3 * k for k in range(NZ)]


def ipp(k):
    return ORIGIN + NORMAL * DZ * k


def fmt(v):
    return [float(f"{x:.6f}") for x in v]


def base(uid_series, k, sop):
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = UIDP + "1"
    ds.SeriesInstanceUID = uid_series
    ds.FrameOfReferenceUID = UIDP + "3"
    ds.Modality = "CT"
    ds.PatientName = "Synthetic^Series"
    ds.PatientID = "VLSM22"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = "20261203"
    ds.StudyTime = "120000"
    ds.StudyID = "22"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def write(ds, path, implicit=False):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def slice_ds(k, series=UIDP + "2", rows=NY, iop=None):
    ds = base(series, k, f"{series}.{k + 1}")
    ds.Rows, ds.Columns = rows, NX
    ds.ImagePositionPatient = fmt(ipp(k))
    ds.ImageOrientationPatient = fmt(np.concatenate([ROW, COL])) if iop is None else iop
    ds.PixelSpacing = [DR, DC]
    ds.SliceThickness = DZ
    ds.RescaleSlope = 2
    ds.RescaleIntercept = INTERCEPT[k]
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = STORED[k, :rows].tobytes()
    return ds


def classic(dirname, ks, series=UIDP + "2", tweak=None):
    names = {}
    order = [3, 0, 4, 1, 2]
    for n, k in enumerate(order):
        if k not in ks:
            continue
        ds = slice_ds(k, series)
        if tweak:
            ds = tweak(k, ds) or ds
        name = f"IM{(n * 7) % 10:04d}_{k}"
        names[k] = name
        write(ds, os.path.join(OUT, dirname, name), implicit=(k % 2 == 1))
    return names


def enhanced():
    ds = base(UIDP + "4", 0, UIDP + "4.1")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.Rows, ds.Columns = NY, NX
    ds.NumberOfFrames = NZ
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = fmt(np.concatenate([ROW, COL]))
    pm = Dataset()
    pm.PixelSpacing = [DR, DC]
    pm.SliceThickness = DZ
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = [2, 4, 0, 3, 1]
    per = []
    for k in order:
        f = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = fmt(ipp(k))
        f.PlanePositionSequence = Sequence([pp])
        pv = Dataset()
        pv.RescaleSlope = 2
        pv.RescaleIntercept = INTERCEPT[k]
        pv.RescaleType = "HU"
        f.PixelValueTransformationSequence = Sequence([pv])
        per.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.stack([STORED[k] for k in order]).tobytes()
    write(ds, os.path.join(OUT, "enhanced", "enhanced.dcm"))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    names = classic("good", range(NZ))
    sr = Dataset()
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.SOPInstanceUID = UIDP + "9.1"
    sr.SeriesInstanceUID = UIDP + "9"
    sr.Modality = "SR"
    write(sr, os.path.join(OUT, "good", "notes", "report.dcm"))
    enhanced()
    classic("missing", [0, 1, 3, 4])
    classic("duplicate", range(NZ))
    d = slice_ds(3)
    d.SOPInstanceUID = UIDP + "2.99"
    write(d, os.path.join(OUT, "duplicate", "IM_copy_of_3"))
    classic("mixed_size", range(NZ), tweak=lambda k, ds: slice_ds(k, rows=3) if k == 2 else None)
    classic(
        "mixed_orient",
        range(NZ),
        tweak=lambda k, ds: slice_ds(k, iop=[1, 0, 0, 0, 1, 0]) if k == 1 else None,
    )
    classic("two_series/a", range(NZ))
    classic("two_series/b", range(3), series=UIDP + "5")
    affine = np.eye(4)
    affine[:3, 0] = ROW * DC
    affine[:3, 1] = COL * DR
    affine[:3, 2] = NORMAL * DZ
    affine[:3, 3] = ORIGIN
    values = np.stack([STORED[k].astype(np.float64) * 2 + INTERCEPT[k] for k in range(NZ)])
    exp = {
        "dims": [NX, NY, NZ],
        "spacing": [DC, DR, DZ],
        "affine_lps": affine.tolist(),
        "values": values.ravel().tolist(),
        "sop_order": [f"{UIDP}2.{k + 1}" for k in range(NZ)],
        "good_files": [names[k] for k in range(NZ)],
        "enhanced_frame_order": [2, 4, 0, 3, 1],
    }
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(exp, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
