"""`vlsm serve` driven by the annotation tools' own client code: MONAI Label's
`MONAILabelClient` (what 3D Slicer's MONAI Label module runs) on /info/ and /infer/{model}, and
Label Studio's brush RLE (label-studio-sdk's converter) on the ML backend's /predict. The server
is the `vlsm` binary with the tiny test model; answers are compared with `vlsm segment` and
/api/segment."""

import base64
import io
import json
import re
import subprocess
import urllib.request
import uuid

import numpy as np
import pytest

from conftest import REPO, TINY_CLIPSEG, TINY_IMAGES, vlsm_bin

NIFTI = REPO / "tests/fixtures/nifti/geom_oblique.nii.gz"
# MONAI Label's client imports `cgi` (deprecated in Python 3.11, gone in 3.13).
pytestmark = pytest.mark.filterwarnings("ignore:'cgi' is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def server():
    """`vlsm serve` on a free loopback port; yields its base URL."""
    p = subprocess.Popen(
        [str(vlsm_bin()), "serve", "--model", str(TINY_CLIPSEG), "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = p.stdout.readline()
        m = re.search(r"listening on (http://[0-9.:]+)/", line)
        if not m:
            p.kill()
            raise AssertionError(f"vlsm serve did not start: {line!r} {p.stderr.read()}")
        yield m.group(1)
    finally:
        p.terminate()
        p.wait(timeout=30)


def post_multipart(url, fields, files):
    """POSTs multipart/form-data; returns (status, headers, body)."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for k, v in fields:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, name, data in files:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=bytes(body), method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req) as r:
        return r.status, r.headers, r.read()


def post_json(url, obj):
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def png_mask(b64):
    from PIL import Image

    return np.array(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"))


# ---- MONAI Label ------------------------------------------------------------------------------


def test_monai_label_client_info(server):
    from monailabel.client import MONAILabelClient

    info = MONAILabelClient(server).info()
    assert info["name"] == "vlsm"
    assert info["models"]["vlsm"]["type"] == "segmentation"
    assert info["models"]["vlsm"]["dimension"] == 3
    assert info["models"]["vlsm_2d"]["dimension"] == 2


def test_monai_label_client_infers_a_volume_like_vlsm_segment(server, cli, tmp_path):
    import nibabel as nib
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(server, tmpdir=str(tmp_path))
    label_file, params = client.infer("vlsm", "", {"prompts": ["organ"]}, file=str(NIFTI))
    assert params["label_names"] == {"organ": 1}
    assert label_file is not None and label_file.endswith(".nii.gz"), label_file
    got = nib.load(label_file)
    src = nib.load(str(NIFTI))
    assert got.shape == src.shape
    np.testing.assert_array_equal(got.affine, src.affine)
    assert got.header.get_sform(coded=True)[1] == src.header.get_sform(coded=True)[1]
    assert got.header.get_qform(coded=True)[1] == src.header.get_qform(coded=True)[1]
    # `vlsm segment` on the same volume writes the same mask.
    cli("segment", NIFTI, "--model", TINY_CLIPSEG, "--prompt", "organ", "--out", tmp_path / "cli")
    (want_file,) = (tmp_path / "cli").glob("*.mask.nii.gz")
    want = np.asarray(nib.load(str(want_file)).dataobj)
    np.testing.assert_array_equal(np.asarray(got.dataobj), want)
    assert 0 < want.sum() < want.size, "a trivial mask tests nothing"


def test_monai_label_client_two_prompts_and_2d(server, tmp_path):
    import nibabel as nib
    from monailabel.client import MONAILabelClient
    from PIL import Image

    client = MONAILabelClient(server, tmpdir=str(tmp_path))
    label_file, params = client.infer("vlsm", "", {"prompts": "organ; a tumour"}, file=str(NIFTI))
    assert params["label_names"] == {"organ": 1, "a tumour": 2}
    lab = np.asarray(nib.load(label_file).dataobj)
    assert set(np.unique(lab)) <= {0, 1, 2}
    assert [int((lab == k).sum()) for k in (1, 2)] == params["voxels"]
    png = sorted(TINY_IMAGES.glob("*.png"))[0]
    label_file, params = client.infer("vlsm_2d", "", {"prompt": "organ"}, file=str(png))
    assert label_file.endswith(".png")
    lab = np.array(Image.open(label_file))
    # The 2-D answer is /api/segment's mask, as label values.
    _, _, body = post_multipart(f"{server}/api/segment", [("prompt", "organ")], [("image", png.name, png.read_bytes())])
    want = png_mask(json.loads(body)["results"][0]["mask_png"]) > 0
    np.testing.assert_array_equal(lab, want.astype(np.uint8))


def test_monai_label_client_session_and_datastore(server, tmp_path):
    """3D Slicer puts a volume it loaded itself in a session (or the datastore), then infers on it."""
    import nibabel as nib
    from monailabel.client import MONAILabelClient
    from monailabel.client.client import MONAILabelClientException

    client = MONAILabelClient(server, tmpdir=str(tmp_path))
    direct, _ = client.infer("vlsm", "", {"prompt": "organ"}, file=str(NIFTI))
    want = np.asarray(nib.load(direct).dataobj)
    sid = client.create_session(str(NIFTI))["session_id"]
    assert client.get_session(sid)["session_id"] == sid
    got, params = client.infer("vlsm", "", {"prompt": "organ"}, session_id=sid)
    np.testing.assert_array_equal(np.asarray(nib.load(got).dataobj), want)
    client.remove_session(sid)
    with pytest.raises(MONAILabelClientException, match="404"):
        client.get_session(sid)
    # A DICOM series as the files of one session (what the client's http_upload sends, several files).
    import requests

    series = sorted(p for p in (REPO / "tests/fixtures/dicom/series/good").iterdir() if p.is_file())
    r = requests.put(f"{server}/session/", files=[("files", (p.name, p.read_bytes())) for p in series])
    assert r.status_code == 200, r.text
    got, params = client.infer("vlsm", "", {"prompt": "organ"}, session_id=r.json()["session_id"])
    assert params["source"] == "dicom-series" and params["shape"] == [6, 4, 5]
    assert nib.load(got).shape == (6, 4, 5)
    assert client.upload_image(str(NIFTI), "scan-1")["image"] == "scan-1"
    got, _ = client.infer("vlsm", "scan-1", {"prompt": "organ"})
    np.testing.assert_array_equal(np.asarray(nib.load(got).dataobj), want)


def test_monai_label_errors(server):
    from monailabel.client import MONAILabelClient
    from monailabel.client.client import MONAILabelClientException

    client = MONAILabelClient(server)
    with pytest.raises(MONAILabelClientException, match="400"):
        client.infer("vlsm", "", {}, file=str(NIFTI))
    with pytest.raises(MONAILabelClientException, match="404"):
        client.infer("nope", "", {"prompt": "x"}, file=str(NIFTI))
    with pytest.raises(MONAILabelClientException, match="datastore"):
        client.infer("vlsm", "image-id", {"prompt": "x"})


# ---- Label Studio -----------------------------------------------------------------------------

CONFIG = """<View>
  <Image name="img" value="$image"/>
  <BrushLabels name="tag" toName="img">
    <Label value="organ" background="red"/>
    <Label value="a tumour" background="blue"/>
  </BrushLabels>
</View>"""


def test_label_studio_predict_rle_decodes_to_the_api_mask(server):
    from label_studio_sdk.converter import brush

    status, health = post_json(f"{server}/setup", {"project": "1.1", "schema": CONFIG})
    assert status == 200 and health["model_version"].startswith("vlsm-")
    png = sorted(TINY_IMAGES.glob("*.png"))[0]
    data = png.read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    status, out = post_json(f"{server}/predict",
                            {"tasks": [{"id": 1, "data": {"image": uri}}], "label_config": CONFIG, "project": "1.1"})
    assert status == 200, out
    results = out["results"][0]["result"]
    _, _, body = post_multipart(f"{server}/api/segment", [("prompt", "organ"), ("prompt", "a tumour")],
                                [("image", png.name, data)])
    seg = json.loads(body)
    checked = 0
    for res in seg["results"]:
        want = png_mask(res["mask_png"])
        got = [r for r in results if r["value"]["brushlabels"] == [res["prompt"]]]
        if not want.any():
            assert not got
            continue
        (r,) = got
        assert (r["type"], r["from_name"], r["to_name"]) == ("brushlabels", "tag", "img")
        h, w = want.shape
        assert (r["original_width"], r["original_height"]) == (w, h)
        rle = r["value"]["rle"]
        decoded = brush.decode_rle(rle).reshape(h, w, 4)[:, :, 3]
        np.testing.assert_array_equal(decoded, want)
        # Byte for byte what the SDK's own encoder makes of the mask.
        assert rle == brush.mask2rle(want)
        checked += 1
    assert checked > 0, "both masks empty: nothing was compared"


def test_label_studio_errors(server):
    status, out = post_json(f"{server}/predict", {"tasks": [{"id": 1, "data": {"image": "x"}}], "label_config": "<View/>"})
    assert status == 400 and "BrushLabels" in out["error"]
    # /train starts the same fine-tune as POST /api/train: refused by a server without --train.
    status, out = post_json(f"{server}/train", {"action": "START_TRAINING", "project": {"id": 1}})
    assert status == 403 and "--train" in out["error"], out
