#!/usr/bin/env python3
"""Writes small NIfTI/DICOM/.npy files with independent writers (nibabel, pydicom, numpy) and
the values those libraries read back, for crates/vlsm/tests/it/io_formats.rs.

Dev-only (needs numpy, nibabel, pydicom); tests read the committed files.
    python tools/make_io_fixtures.py   # from the repo root
"""
import json
import os

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         generate_uid)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(7)
expected = {}

# --- numpy .npy
np.save(os.path.join(OUT, "a23.npy"), np.arange(6, dtype="<f4").reshape(2, 3) * np.float32(0.5) - np.float32(1))
np.save(os.path.join(OUT, "v5.npy"), np.linspace(0, 1, 5, dtype="<f4"))
np.save(os.path.join(OUT, "s.npy"), np.float32(3.5))

# --- NIfTI: a 3-D int16 volume with slope/intercept (gzipped) and a 2-D uint8 image.
vol = rng.integers(-300, 800, size=(9, 7, 5), dtype=np.int16)  # (i, j, k) = (x, y, z)
img = nib.Nifti1Image(vol, np.eye(4))
img.header.set_slope_inter(0.5, 10.0)
nib.save(img, os.path.join(OUT, "vol.nii.gz"))
back = nib.load(os.path.join(OUT, "vol.nii.gz")).get_fdata()  # scaled
for k in (None, 3):
    kk = vol.shape[2] // 2 if k is None else k
    expected[f"vol.nii.gz:{k}"] = {"width": 9, "height": 7, "values": back[:, :, kk].T.ravel().tolist()}
flat = rng.integers(0, 256, size=(6, 4), dtype=np.uint8)
nib.save(nib.Nifti1Image(flat, np.eye(4)), os.path.join(OUT, "flat.nii"))
expected["flat.nii:None"] = {"width": 6, "height": 4, "values": flat.T.astype(float).ravel().tolist()}


# --- DICOM
def dicom(name, ts, arr, signed, bits_stored, slope=None, inter=None, window=None, photometric="MONOCHROME2"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = "Test^Fixture"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.3"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = Sequence([item])
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = inter
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = arr.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(os.path.join(OUT, name), enforce_file_format=True)
    back = pydicom.dcmread(os.path.join(OUT, name))
    vals = back.pixel_array.astype(float)
    if slope is not None:
        vals = vals * float(back.RescaleSlope) + float(back.RescaleIntercept)
    expected[f"{name}:None"] = {"width": arr.shape[1], "height": arr.shape[0], "values": vals.ravel().tolist(),
                                "window": list(window) if window else None}


ct = rng.integers(-2048, 2047, size=(6, 8)).astype(np.int16)
dicom("ct_explicit.dcm", ExplicitVRLittleEndian, ct, True, 12, "1", "-1024", ("40", "400"))
mr = rng.integers(0, 65535, size=(5, 7)).astype(np.uint16)
dicom("mr_implicit.dcm", ImplicitVRLittleEndian, mr, False, 16)
dicom("ct_deflated.dcm", DeflatedExplicitVRLittleEndian, ct, True, 12, "2.5", "-100")

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f)
print("wrote", sorted(os.listdir(OUT)))
