"""Packs a wheel of the `vlsm` package around a native module cargo has already built:
`python debug_wheel.py LIB_VLSM_SO OUT_DIR` prints the wheel's path.

For the test run of the README's test command (bindings/python/venv.sh --debug): after
`cargo test --workspace`, `PYO3_BUILD_EXTENSION_MODULE=1 cargo build --workspace --lib` links
`target/debug/lib_vlsm.so` from that run's artifacts (only pyo3 and the module recompile), where
maturin's release build would compile every dependency again. Users' `pip install
./bindings/python` stays maturin's release wheel; this one carries the same Python files, the
same module name and pyproject.toml's metadata, and is tagged for this interpreter's platform.
"""

import base64
import hashlib
import re
import sys
import sysconfig
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def version() -> str:
    text = (HERE.parents[1] / "Cargo.toml").read_text()
    m = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
    if not m:
        sys.exit("error: Cargo.toml: no [workspace.package] version")
    return m.group(1)


def metadata(ver: str) -> str:
    text = (HERE / "pyproject.toml").read_text()
    requires = re.search(r'^requires-python\s*=\s*"([^"]+)"', text, re.M).group(1)
    deps = re.search(r"^dependencies\s*=\s*\[([^\]]*)\]", text, re.M).group(1)
    lines = ["Metadata-Version: 2.1", "Name: vlsm", f"Version: {ver}", f"Requires-Python: {requires}"]
    lines += [f"Requires-Dist: {d}" for d in re.findall(r'"([^"]+)"', deps)]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: debug_wheel.py LIB_VLSM_SO OUT_DIR")
    so, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not so.is_file():
        sys.exit(f"error: {so}: no such file (build it with cargo first)")
    ver = version()
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tag = f"cp39-abi3-{plat}"
    dist = f"vlsm-{ver}.dist-info"
    files = {f"vlsm/{p.name}": p.read_bytes() for p in sorted((HERE / "python" / "vlsm").iterdir()) if p.is_file()}
    files["vlsm/_vlsm.abi3.so"] = so.read_bytes()
    files[f"{dist}/METADATA"] = metadata(ver).encode()
    files[f"{dist}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: vlsm debug_wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n"
    ).encode()
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"vlsm-{ver}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            z.writestr(info, data, zipfile.ZIP_DEFLATED)
    print(wheel)


if __name__ == "__main__":
    main()
