#!/usr/bin/env python3
"""Writes the NIfTI volume fixtures of tests/fixtures/nifti/ and the values nibabel reads from
them, for crates/vlsm/tests/it/io_volume.rs and crates/vlsm-cli/tests/it/volume_cli.rs.

- nibabel/: nibabel's own test NIfTI files (MIT, see nibabel/README.md there), copied when small;
  example4d.nii.gz (346 kB) is replaced by a crop written with its header.
- dtypes/: one tiny volume per NIfTI datatype, little and big endian, NIfTI-1 and -2.
- geom_*.nii*: a small volume with an oblique affine and anisotropic spacing (sform and qform
  with different codes), as NIfTI-1 .nii.gz, NIfTI-2 big-endian .nii, and 4-D.
- stack/: three 48x40 RGB slices cut from examples/ (PNG) and the same slices as one RGB24
  volume (voxel (x, y, k) = pixel (x, y) of slice k).
- expected.json: per file, nibabel's first 3-D volume of get_fdata (shape, NaN count, sum, sum
  of squares, min and max of the finite values, 24 sampled voxels, null = NaN), pixdim, codes and the affine the reader must give.

Dev-only (numpy, nibabel, pillow); tests read the committed files.
    python tools/make_volume_fixtures.py   # from the repo root
"""
import json
import os
import shutil

import nibabel as nib
import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "nifti")
NIB = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
for d in ("nibabel", "dtypes", "stack"):
    os.makedirs(os.path.join(OUT, d), exist_ok=True)
expected = {}


def affine_rule(hdr):
    """sform if sform_code > 0, else qform if qform_code > 0, else pixdim (NIfTI method 1)."""
    if int(hdr["sform_code"]) > 0:
        return hdr.get_sform()
    if int(hdr["qform_code"]) > 0:
        return hdr.get_qform()
    z = np.ones(4)
    z[:3] = hdr["pixdim"][1:4]
    return np.diag(z)


def record(rel):
    img = nib.load(os.path.join(OUT, rel))
    hdr = img.header
    data = np.asanyarray(img.dataobj)
    if data.dtype.names:  # RGB24: compare the raw bytes
        vol = np.stack([data[n] for n in data.dtype.names], -1).astype(np.float64)
        while vol.ndim > 4:
            vol = vol[..., 0, :]
        vol3 = vol.reshape(vol.shape[:3] + (3,))
    else:
        vol = img.get_fdata()
        while vol.ndim > 3:
            vol = vol[..., 0]
        if vol.ndim == 2:
            vol = vol[:, :, None]
        vol3 = vol
    flat = vol3.reshape(-1, *vol3.shape[3:]) if vol3.ndim == 4 else vol3.ravel(order="F")
    if vol3.ndim == 4:
        flat = vol3.transpose(2, 1, 0, 3).reshape(-1)  # x fastest, then the 3 channels
    else:
        flat = vol3.ravel(order="F")
    fin = flat[np.isfinite(flat)]
    rng = np.random.default_rng(len(rel))
    idx = sorted(set(rng.integers(0, flat.size, 24).tolist()))
    expected[rel] = {
        "shape": list(vol3.shape[:3]),
        "rgb": bool(data.dtype.names),
        "nan": int(np.isnan(flat).sum()),
        "sum": float(fin.sum()),
        "sumsq": float((fin * fin).sum()),
        "min": float(fin.min()),
        "max": float(fin.max()),
        "samples": [[i, None if np.isnan(flat[i]) else float(flat[i])] for i in idx],
        "pixdim": [float(v) for v in hdr["pixdim"]],
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "affine": affine_rule(hdr).tolist(),
        "qform": hdr.get_qform().tolist(),
        "volumes": int(np.prod(img.shape[3:])) if len(img.shape) > 3 else 1,
    }


# --- nibabel's test files
for name in ["anatomical.nii", "example_nifti2.nii.gz", "functional.nii", "reoriented_anat_moved.nii",
             "resampled_anat_moved.nii", "standard.nii.gz", "row_major.dconn.nii"]:
    shutil.copy(os.path.join(NIB, name), os.path.join(OUT, "nibabel", name))
ex4 = nib.load(os.path.join(NIB, "example4d.nii.gz"))
crop = nib.Nifti1Image(np.asanyarray(ex4.dataobj)[40:72, 30:54, 8:14, :], ex4.affine, ex4.header)
nib.save(crop, os.path.join(OUT, "nibabel", "example4d_crop.nii.gz"))
for name in sorted(os.listdir(os.path.join(OUT, "nibabel"))):
    if name.endswith((".nii", ".nii.gz")) and "dconn" not in name:
        record(f"nibabel/{name}")
expected["nibabel/row_major.dconn.nii"] = {"error": "CIFTI-2"}

# --- every datatype, both byte orders, NIfTI-1 and -2, with and without scaling
rng = np.random.default_rng(22)
for dt in ["u1", "i1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"]:
    info = np.iinfo(dt) if dt[0] in "iu" else None
    lo, hi = (max(info.min, -30000), min(info.max, 60000)) if info else (-1000, 1000)
    arr = rng.integers(lo, hi, size=(5, 4, 3)).astype(dt)
    if dt[0] == "f":
        arr = (arr * 0.37).astype(dt)
    for order, cls, ext in [("<", nib.Nifti1Image, ".nii"), (">", nib.Nifti2Image, ".nii.gz")]:
        img = cls(arr, np.diag([1.5, 2.0, 3.0, 1.0]), header=cls.header_class(endianness=order))
        img.header.set_data_dtype(np.dtype(dt).newbyteorder(order))
        rel = f"dtypes/{dt}_{'le' if order == '<' else 'be'}_n{1 if cls is nib.Nifti1Image else 2}{ext}"
        img.header.set_qform(None, code=0)
        img.header.set_sform(None, code=0)
        if dt == "i2":
            img.header.set_slope_inter(0.25, -7.0)
        nib.save(img, os.path.join(OUT, rel))
        back = nib.load(os.path.join(OUT, rel))
        assert back.header.endianness == order, (rel, back.header.endianness)
        record(rel)
rgb_dt = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
rgb = np.zeros((4, 3, 2), dtype=rgb_dt)
for n in "RGB":
    rgb[n] = rng.integers(0, 256, size=(4, 3, 2))
nib.save(nib.Nifti1Image(rgb, np.eye(4)), os.path.join(OUT, "dtypes/rgb24.nii"))
record("dtypes/rgb24.nii")

# --- geometry: oblique affine, anisotropic spacing; sform (code 2) and qform (code 1) differ
t = np.deg2rad(17.0)
rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
t2 = np.deg2rad(-8.0)
rot = rot @ np.array([[1, 0, 0], [0, np.cos(t2), -np.sin(t2)], [0, np.sin(t2), np.cos(t2)]])
zooms = np.array([0.7, 0.9, 2.5])
aff = np.eye(4)
aff[:3, :3] = rot * zooms
aff[:3, 3] = [-12.5, 30.25, 7.0]
q_aff = aff.copy()
q_aff[:3, 3] += [1.0, -2.0, 0.5]
geo = (rng.normal(40, 300, size=(12, 10, 6))).astype(np.int16)
for rel, cls, order, data in [
    ("geom_oblique.nii.gz", nib.Nifti1Image, "<", geo),
    ("geom_oblique_n2_be.nii", nib.Nifti2Image, ">", geo),
    ("geom_oblique_4d.nii.gz", nib.Nifti1Image, "<", np.stack([geo, geo + 1], -1)),
]:
    img = cls(data, aff, header=cls.header_class(endianness=order))
    img.header.set_data_dtype(np.dtype("i2").newbyteorder(order))
    img.header.set_sform(aff, code=2)
    img.header.set_qform(q_aff, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, os.path.join(OUT, rel))
    record(rel)

# --- stack: three examples/ images as slices
names = ["kvasir_cju2xjz2ju8pe0993ysv9wg17.jpg", "clinicdb_382.png", "busi_20_benign.jpg"]
slices = []
for k, n in enumerate(names):
    im = Image.open(os.path.join(ROOT, "examples", n)).convert("RGB").resize((48, 40), Image.BILINEAR)
    im.save(os.path.join(OUT, "stack", f"s{k}.png"))
    slices.append(np.asarray(im))  # [y, x, 3]
vol = np.zeros((48, 40, 3), dtype=rgb_dt)
for k, s in enumerate(slices):
    for c, n in enumerate("RGB"):
        vol[n][:, :, k] = s[:, :, c].T
img = nib.Nifti1Image(vol, aff)
img.header.set_sform(aff, code=1)
nib.save(img, os.path.join(OUT, "stack", "stack.nii.gz"))
record("stack/stack.nii.gz")

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
print(f"wrote {len(expected)} entries to {OUT}")
