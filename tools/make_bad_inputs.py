"""Writes tests/fixtures/bad_inputs/: small hostile files for the bad-input corpus test
(crates/vlsm-cli/tests/it/bad_inputs.rs), which runs `vlsm segment`, `vlsm imgproc` and
`vlsm eval` over every one of them, as expected.tsv says. Large cases (decompression bombs) and
non-regular files (FIFOs, directories, /dev/zero) are made by the test itself.

    python tools/make_bad_inputs.py            # uses Pillow, numpy, pyjpegls (tools/requirements.txt)

Deterministic: running it again writes the same bytes.
"""

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/bad_inputs"

# name, role, commands, what stderr must contain (besides the file's name; "OK": the run must
# succeed and write only under --out). Roles: image (the
# image of segment / imgproc gray / an eval record), mask (segment --prompt-mask, an eval record's
# mask), anns (an eval split), model (files laid over a copy of the tiny CLIPSeg), prompt (the
# text of segment -p, read from the file).
CASES = []


def case(name, role, commands, expect, data):
    path = OUT / name
    if isinstance(data, dict):  # a model: file name -> bytes
        path.mkdir(parents=True, exist_ok=True)
        for k, v in data.items():
            (path / k).write_bytes(v)
    else:
        path.write_bytes(data)
    CASES.append((name, role, commands, expect))


def png_bytes(img):
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


def jpeg_bytes(img):
    b = io.BytesIO()
    img.save(b, "JPEG", quality=80)
    return b.getvalue()


def gradient(w, h):
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(h) for x in range(w)])
    return img


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")


def bmp(w, h, pixels=b""):
    size = 54 + len(pixels)
    return b"BM" + struct.pack("<IHHI", size, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0) + pixels


def nifti(dims, datatype=2, bitpix=8, vox_offset=352.0, sizeof_hdr=348, magic=b"n+1\0", data=b""):
    h = bytearray(352)
    struct.pack_into("<i", h, 0, sizeof_hdr)
    dim = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into("<8h", h, 40, *dim)
    struct.pack_into("<hh", h, 70, datatype, bitpix)
    struct.pack_into("<f", h, 108, vox_offset)
    struct.pack_into("<f", h, 112, 1.0)
    h[344:348] = magic
    return bytes(h) + data


def el(group, elem, vr, value):
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    head = struct.pack("<HH", group, elem) + vr
    if vr in (b"OB", b"OW", b"UN", b"SQ"):
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def dicom(ts=b"1.2.840.10008.1.2.1", rows=32, cols=48, slope=b"1", pixels=True, deflate=False, cut=None):
    if deflate:
        ts = b"1.2.840.10008.1.2.1.99"
    meta = el(0x0002, 0x0001, b"OB", b"\0\1") + el(0x0002, 0x0010, b"UI", ts)
    body = el(0x0008, 0x0060, b"CS", b"CT")
    body += el(0x0028, 0x0002, b"US", struct.pack("<H", 1)) + el(0x0028, 0x0004, b"CS", b"MONOCHROME2")
    body += el(0x0028, 0x0010, b"US", struct.pack("<H", rows)) + el(0x0028, 0x0011, b"US", struct.pack("<H", cols))
    body += el(0x0028, 0x0100, b"US", struct.pack("<H", 16)) + el(0x0028, 0x0101, b"US", struct.pack("<H", 12))
    body += el(0x0028, 0x0103, b"US", struct.pack("<H", 0))
    body += el(0x0028, 0x1052, b"DS", b"0") + el(0x0028, 0x1053, b"DS", slope)
    if pixels:
        body += el(0x7FE0, 0x0010, b"OW", bytes(range(2 * rows * cols)) if rows * cols < 128 else bytes(2 * rows * cols))
    if deflate:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = c.compress(body) + c.flush()
    if cut is not None:
        body = body[:cut]
    return bytes(128) + b"DICM" + meta + body


def jpegls_bytes(img):
    import jpeg_ls  # pyjpegls (CharLS)
    import numpy as np

    return jpeg_ls.encode(np.asarray(img)).tobytes()


def j2k_bytes(img):
    b = io.BytesIO()
    img.save(b, "JPEG2000", no_jp2=True, irreversible=False)
    return b.getvalue()


def dicom_encapsulated(ts, stream, rows=32, cols=48):
    """An 8-bit grey image whose pixel data is one encapsulated fragment holding `stream`."""
    if len(stream) % 2:
        stream += b"\0"
    meta = el(0x0002, 0x0001, b"OB", b"\0\1") + el(0x0002, 0x0010, b"UI", ts)
    body = el(0x0008, 0x0060, b"CS", b"CT")
    body += el(0x0028, 0x0002, b"US", struct.pack("<H", 1)) + el(0x0028, 0x0004, b"CS", b"MONOCHROME2")
    body += el(0x0028, 0x0010, b"US", struct.pack("<H", rows)) + el(0x0028, 0x0011, b"US", struct.pack("<H", cols))
    body += el(0x0028, 0x0100, b"US", struct.pack("<H", 8)) + el(0x0028, 0x0101, b"US", struct.pack("<H", 8))
    body += el(0x0028, 0x0103, b"US", struct.pack("<H", 0))
    body += struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + b"\xff\xff\xff\xff"
    body += b"\xfe\xff\x00\xe0" + bytes(4)
    body += b"\xfe\xff\x00\xe0" + struct.pack("<I", len(stream)) + stream
    body += b"\xfe\xff\xdd\xe0" + bytes(4)
    return bytes(128) + b"DICM" + meta + body


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    img = gradient(48, 32)
    jpg = jpeg_bytes(img)
    png = png_bytes(img)

    # Raster images.
    # Cut inside the headers, the decoder says "Not enough bytes"; cut in the scan, "truncated JPEG".
    for pct in (10, 50):
        case(f"jpeg_cut{pct}.jpg", "image", "segment imgproc eval", "", jpg[: len(jpg) * pct // 100])
    case("jpeg_cut99.jpg", "image", "segment imgproc eval", "truncated JPEG", jpg[: len(jpg) * 99 // 100])
    for pct in (5, 30, 60, 90):
        case(f"png_cut{pct}.png", "image", "segment imgproc eval", "", png[: len(png) * pct // 100])
    case("png_bad_crc.png", "image", "segment imgproc eval", "", png[:29] + bytes([png[29] ^ 0xFF]) + png[30:])
    case("png_huge_header.png", "image", "segment imgproc eval", "limit", png_header_only(10001, 10000))
    case("png_zero_width.png", "image", "segment imgproc eval", "", png_header_only(0, 10))
    case("bmp_zero_width.bmp", "image", "segment imgproc eval", "zero size", bmp(0, 4))
    case("bmp_huge.bmp", "image", "segment imgproc eval", "limit", bmp(100000, 100000))
    case("bmp_short_pixels.bmp", "image", "segment imgproc eval", "", bmp(64, 64, bytes(100)))
    b = io.BytesIO()
    img.save(b, "TIFF")
    tif = b.getvalue()
    case("tiff_cut.tif", "image", "segment imgproc eval", "", tif[: len(tif) // 2])
    case("empty.png", "image", "segment imgproc eval", "", b"")
    case("text.png", "image", "segment imgproc eval", "", b"this is not an image\n")
    case("gif.gif", "image", "segment imgproc eval", "", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

    # NIfTI (imgproc takes rasters only: see the as_raster cases; segment and eval read 2-D NIfTI
    # and DICOM too; a 4-D file gives its first volume, so eval then finds the mask's size wrong).
    case("nifti_dim_negative.nii", "image", "eval", "negative", nifti([-64, 72, 1]))
    case("nifti_zero_dim.nii", "image", "eval", "zero size", nifti([0, 72, 1]))
    case("nifti_bad_sizeof.nii", "image", "eval", "sizeof_hdr", nifti([4, 4, 1], sizeof_hdr=123))
    case("nifti_vox_offset_huge.nii", "image", "eval", "vox_offset", nifti([4, 4, 1], vox_offset=1e30))
    case("nifti_4d.nii", "image", "eval", "is 4x4", nifti([4, 4, 3, 2], data=bytes(96)))
    case("nifti_bad_datatype.nii", "image", "eval", "datatype", nifti([4, 4, 1], datatype=9999, data=bytes(16)))
    case("nifti_truncated.nii", "mask", "segment eval", "truncated", nifti([48, 32, 1], data=bytes(100)))
    case("nifti_huge_plane.nii.gz", "image", "eval", "limit", gz(nifti([20000, 20000, 21]) + bytes(4096)))
    case("nifti_cut.nii.gz", "image", "eval", "", gz(nifti([16, 16, 1], data=bytes(256)))[:40])

    # DICOM.
    case("dicom_nan_rescale.dcm", "mask", "segment eval", "not a finite number", dicom(slope=b"NaN"))
    case("dicom_inf_rescale.dcm", "mask", "segment eval", "not a finite number", dicom(slope=b"inf"))
    case("dicom_jpeg_ts.dcm", "image", "eval", "encapsulated", dicom(ts=b"1.2.840.10008.1.2.4.50"))
    case("dicom_no_pixels.dcm", "image", "eval", "no pixel data", dicom(pixels=False))
    case("dicom_zero_rows.dcm", "image", "eval", "zero size", dicom(rows=0))
    case("dicom_deflate_cut.dcm", "image", "eval", "deflated data set ends early", dicom(deflate=True, cut=60))
    case("dicom_truncated.dcm", "mask", "segment eval", "truncated", dicom()[:-5])
    case("dicom_no_marker.dcm", "image", "eval", "DICM", bytes(200))
    # Compressed frames (48x32 grey, the size of the eval mask) cut inside the codestream, the
    # encapsulation itself intact.
    grey = img.convert("L")
    for name, ts, stream, expect in [
        ("dicom_jpegls_cut.dcm", b"1.2.840.10008.1.2.4.80", jpegls_bytes(grey), "JPEG-LS"),
        ("dicom_j2k_cut.dcm", b"1.2.840.10008.1.2.4.90", j2k_bytes(grey), "JPEG 2000"),
        ("dicom_jpeg_cut.dcm", b"1.2.840.10008.1.2.4.50", jpeg_bytes(grey), "truncated JPEG"),
    ]:
        k = len(stream) // 4 * 2
        case(name, "image", "eval", expect, dicom_encapsulated(ts, stream[:k]))

    # Medical files where imgproc expects a raster: refused by name, one line (segment reads them).
    case("nifti_as_raster.nii", "image", "imgproc", "PNG, JPEG, TIFF or BMP", nifti([48, 32, 1], data=bytes(48 * 32)))
    case("dicom_as_raster.dcm", "image", "imgproc", "PNG, JPEG, TIFF or BMP", dicom())

    # Masks (segment --prompt-mask, eval's mask), with a good image.
    case("mask_cut.png", "mask", "segment eval", "", png_bytes(Image.new("L", (48, 32), 255))[:40])
    case("mask_nan.dcm", "mask", "segment eval", "not a finite number", dicom(slope=b"NaN"))

    # anns (eval).
    good = {"img_name": "im0.png", "mask_name": "im0_mask.png", "prompts": {"p0": "", "p1": "a square"}}
    case("anns_syntax.json", "anns", "eval", "invalid JSON", b'[{"img_name": "im0.png",')
    case("anns_not_a_list.json", "anns", "eval", "list", b'{"img_name": "im0.png"}')
    case("anns_empty.json", "anns", "eval", "no records", b"[]")
    case("anns_no_img_name.json", "anns", "eval", "img_name", json.dumps([{k: v for k, v in good.items() if k != "img_name"}]).encode())
    case("anns_number_name.json", "anns", "eval", "img_name", json.dumps([dict(good, img_name=7)]).encode())
    case("anns_escape.json", "anns", "eval", "..", json.dumps([dict(good, mask_name="../../../tmp/x.png")]).encode())
    case("anns_absolute.json", "anns", "eval", "absolute", json.dumps([dict(good, img_name="/etc/passwd")]).encode())
    case("anns_missing_file.json", "anns", "eval", "nothere", json.dumps([dict(good, img_name="nothere.png")]).encode())
    case("anns_no_prompt.json", "anns", "eval", "p1", json.dumps([dict(good, prompts={"p0": ""})]).encode())
    case("anns_prompt_number.json", "anns", "eval", "", json.dumps([dict(good, prompts={"p1": 5})]).encode())
    case("anns_not_utf8.json", "anns", "eval", "", b'[{"img_name": "\xff\xfe"}]')

    # Models: files laid over a copy of tests/fixtures/clipseg/tiny_complex.
    tiny = ROOT / "tests/fixtures/clipseg/tiny_complex"
    cfg = json.loads((tiny / "config.json").read_text())
    wrong = json.loads(json.dumps(cfg))
    wrong["vision_config"]["hidden_size"] = 48
    case("model_wrong_shapes", "model", "segment", "shape mismatch", {"config.json": json.dumps(wrong, indent=1).encode()})
    case("model_config_syntax", "model", "segment", "config.json", {"config.json": b'{"model_type": "clipseg",'})
    case("model_unknown_type", "model", "segment", "model_type", {"config.json": json.dumps(dict(cfg, model_type="gpt9")).encode()})
    st = (tiny / "model.safetensors").read_bytes()
    case("model_weights_cut", "model", "segment", "model.safetensors", {"model.safetensors": st[:5000]})
    case("model_weights_huge_header", "model", "segment", "model.safetensors", {"model.safetensors": struct.pack("<Q", 1 << 62) + b"{}"})
    pre = json.loads((tiny / "preprocessor_config.json").read_text())
    case("model_processor_huge", "model", "segment", "preprocessor_config.json", {"preprocessor_config.json": json.dumps(dict(pre, size=100000)).encode()})
    case("model_processor_zero_std", "model", "segment", "image_std", {"preprocessor_config.json": json.dumps(dict(pre, image_std=[0, 0, 0])).encode()})

    # Prompts (segment -p, the file's text): accepted (p0 is empty by design; CLIP truncates at
    # 77 tokens; the test adds a 120 KB prompt), so OK: success, outputs only under --out.
    case("prompt_empty.txt", "prompt", "segment", "OK", b"")
    case("prompt_control.txt", "prompt", "segment", "OK", "\x1b[31mpolyp\x07 \u202e\ufeff\U0001F600".encode())

    with open(OUT / "expected.tsv", "w") as f:
        f.write("# Written by tools/make_bad_inputs.py: name, role, commands, what the one-line error must contain\n")
        f.write("# (besides the file's name; empty: anything; OK: must succeed). Run by crates/vlsm-cli/tests/it/bad_inputs.rs.\n")
        for c in CASES:
            f.write("\t".join(c) + "\n")
    print(f"{len(CASES)} cases in {OUT}")


def gz(data):
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


if __name__ == "__main__":
    main()
