//! io: NIfTI volumes against nibabel (tests/fixtures/nifti, tools/make_volume_fixtures.py),
//! geometry kept by the mask writer, bad volumes, windows.

use std::io::Write;
use std::path::{Path, PathBuf};

use vlsm::io::*;

fn fx(rel: &str) -> PathBuf {
    crate::support::fx("nifti").join(rel)
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fx("expected.json")).unwrap()).unwrap()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

fn err_of<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    let e = format!("{}", r.unwrap_err());
    assert!(!e.contains('\n'), "error is not one line: {e}");
    e
}

fn values(v: &Volume) -> Vec<f64> {
    match &v.data {
        VoxelData::Scalar(s) => s.iter().map(|&x| x as f64).collect(),
        VoxelData::Rgb(s) => s.iter().map(|&x| x as f64).collect(),
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn every_fixture_reads_as_nibabel_does() {
    let exp = expected();
    let mut n = 0;
    for (rel, e) in exp.as_object().unwrap() {
        let path = fx(rel);
        if e.get("error").is_some() {
            let msg = err_of(read_volume(&path, DEFAULT_MAX_VOXELS));
            assert!(msg.contains(rel.rsplit('/').next().unwrap()) && msg.contains("CIFTI"), "{rel}: {msg}");
            continue;
        }
        let v = read_volume(&path, DEFAULT_MAX_VOXELS).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(v.dims.to_vec(), shape, "{rel}");
        assert_eq!(matches!(v.data, VoxelData::Rgb(_)), e["rgb"].as_bool().unwrap(), "{rel}");
        let vals = values(&v);
        // f32 storage: values exact up to f32 rounding; sums over f32-rounded values.
        for s in e["samples"].as_array().unwrap() {
            let i = s[0].as_u64().unwrap() as usize;
            if s[1].is_null() {
                assert!(vals[i].is_nan(), "{rel}: voxel {i}: {} vs nibabel NaN", vals[i]);
                continue;
            }
            let want = f(&s[1]);
            assert!(close(vals[i], want, 1e-6), "{rel}: voxel {i}: {} vs nibabel {want}", vals[i]);
        }
        assert_eq!(vals.iter().filter(|x| x.is_nan()).count() as u64, e["nan"].as_u64().unwrap(), "{rel}");
        let vals: Vec<f64> = vals.into_iter().filter(|x| x.is_finite()).collect();
        let sum: f64 = vals.iter().sum();
        let sumsq: f64 = vals.iter().map(|x| x * x).sum();
        assert!(close(sum, f(&e["sum"]), 1e-6), "{rel}: sum {sum} vs {}", e["sum"]);
        assert!(close(sumsq, f(&e["sumsq"]), 1e-6), "{rel}: sumsq {sumsq} vs {}", e["sumsq"]);
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(close(min, f(&e["min"]), 1e-6) && close(max, f(&e["max"]), 1e-6), "{rel}: {min}..{max}");
        let h = &v.header;
        assert_eq!(h.qform_code as i64, e["qform_code"].as_i64().unwrap(), "{rel}");
        assert_eq!(h.sform_code as i64, e["sform_code"].as_i64().unwrap(), "{rel}");
        for (i, p) in e["pixdim"].as_array().unwrap().iter().enumerate() {
            assert!(close(h.pixdim[i], f(p), 1e-6), "{rel}: pixdim[{i}] {} vs {p}", h.pixdim[i]);
        }
        for (what, got) in [("affine", h.affine()), ("qform", h.qform_affine())] {
            for r in 0..4 {
                for c in 0..4 {
                    let want = f(&e[what][r][c]);
                    assert!((got[r][c] - want).abs() < 1e-5, "{rel}: {what}[{r}][{c}] {} vs {want}", got[r][c]);
                }
            }
        }
        let vols = e["volumes"].as_u64().unwrap();
        assert_eq!(v.notes.len(), usize::from(vols > 1), "{rel}: notes {:?}", v.notes);
        if vols > 1 {
            assert!(v.notes[0].contains("first volume"), "{rel}: {:?}", v.notes);
        }
        assert_eq!(volume_dimensions(&path).unwrap(), v.dims, "{rel}");
        n += 1;
    }
    // nibabel's 7 readable files, 21 datatype files, 3 geometry files, the stack.
    assert_eq!(n, 32);
}

#[test]
fn every_datatype_and_byte_order_is_covered() {
    let exp = expected();
    let keys: Vec<&String> = exp.as_object().unwrap().keys().filter(|k| k.starts_with("dtypes/")).collect();
    for dt in ["u1", "i1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"] {
        for variant in ["le_n1.nii", "be_n2.nii.gz"] {
            let k = format!("dtypes/{dt}_{variant}");
            assert!(keys.iter().any(|x| **x == k), "{k} missing");
        }
    }
    let be = read_volume(&fx("dtypes/i2_be_n2.nii.gz"), DEFAULT_MAX_VOXELS).unwrap();
    assert!(!be.header.little_endian && be.header.version == 2);
    assert_eq!((be.header.scl_slope, be.header.scl_inter), (0.25, -7.0));
}

#[allow(clippy::type_complexity)]
fn header_fields(h: &NiftiHeader) -> (u8, bool, Vec<u64>, [f64; 8], i32, i32, [[f64; 4]; 4], [[f64; 4]; 4], i32) {
    (
        h.version,
        h.little_endian,
        h.dim[1..4].to_vec(),
        h.pixdim,
        h.qform_code,
        h.sform_code,
        h.sform_affine(),
        h.qform_affine(),
        h.xyzt_units,
    )
}

#[test]
fn masks_keep_the_source_geometry() {
    let d = tempfile::tempdir().unwrap();
    for rel in ["geom_oblique.nii.gz", "geom_oblique_n2_be.nii", "geom_oblique_4d.nii.gz", "nibabel/anatomical.nii"] {
        let src = read_volume(&fx(rel), DEFAULT_MAX_VOXELS).unwrap();
        let n = src.dims.iter().product::<usize>();
        let mask: Vec<u8> = (0..n).map(|i| (i % 3 == 0) as u8).collect();
        let out = d.path().join("m.mask.nii.gz");
        write_like(&out, &src.header, OutputData::U8(&mask)).unwrap();
        let back = read_volume(&out, DEFAULT_MAX_VOXELS).unwrap();
        assert_eq!(header_fields(&back.header), header_fields(&src.header), "{rel}");
        assert_eq!(back.header.datatype, 2, "{rel}");
        assert_eq!(back.header.dim[0], src.header.dim[0].min(3), "{rel}");
        assert_eq!(back.header.affine(), src.header.affine(), "{rel}");
        assert!(back.notes.is_empty(), "{rel}: the mask is 3-D");
        assert_eq!(values(&back), mask.iter().map(|&v| v as f64).collect::<Vec<_>>(), "{rel}");

        let probs: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        let out = d.path().join("m.probs.nii.gz");
        write_like(&out, &src.header, OutputData::F32(&probs)).unwrap();
        let back = read_volume(&out, DEFAULT_MAX_VOXELS).unwrap();
        assert_eq!(header_fields(&back.header), header_fields(&src.header), "{rel}");
        assert_eq!(back.header.datatype, 16);
        assert_eq!(back.data, VoxelData::Scalar(probs), "{rel}");
    }
    // Wrong length: refused, nothing written.
    let src = read_volume(&fx("geom_oblique.nii.gz"), DEFAULT_MAX_VOXELS).unwrap();
    let out = d.path().join("short.nii.gz");
    assert!(err_of(write_like(&out, &src.header, OutputData::U8(&[0; 5]))).contains("short.nii.gz"));
    assert!(!out.exists());
}

#[test]
fn slices_along_each_axis() {
    let v = read_volume(&fx("geom_oblique.nii.gz"), DEFAULT_MAX_VOXELS).unwrap();
    let [nx, ny, nz] = v.dims;
    let VoxelData::Scalar(all) = &v.data else { panic!() };
    let at = |i: usize, j: usize, k: usize| all[i + nx * (j + ny * k)];
    for axis in 0..3 {
        let (w, h, n) = v.slice_dims(axis);
        assert_eq!(w * h * n, nx * ny * nz);
        let k = n - 1;
        let SliceData::Scalar(s) = v.slice_values(axis, k) else { panic!() };
        for y in 0..h {
            for x in 0..w {
                let want = match axis {
                    0 => at(k, x, y),
                    1 => at(x, k, y),
                    _ => at(x, y, k),
                };
                assert_eq!(s[y * w + x], want, "axis {axis} ({x}, {y})");
            }
        }
        let mut back = vec![0f32; all.len()];
        for k in 0..n {
            put_slice(&mut back, v.dims, axis, k, &take_slice(all, v.dims, axis, k, 1));
        }
        assert_eq!(&back, all, "axis {axis}");
    }
}

/// A NIfTI-1 header (little endian) for `dims` of `datatype`, data after it.
fn nifti1(dims: &[i16], datatype: i16, bitpix: i16, vox_offset: f32, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[40..42].copy_from_slice(&(dims.len() as i16).to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        h[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    h[108..112].copy_from_slice(&vox_offset.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h.extend_from_slice(data);
    h
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_volumes_are_one_line_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let good = nifti1(&[4, 3, 2], 4, 16, 352.0, &[1u8; 48]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("trunc.nii", good[..good.len() - 5].to_vec(), "truncated"),
        ("trunc.nii.gz", gz(&good[..good.len() - 5]), "truncated"),
        ("zero.nii", nifti1(&[4, 0, 2], 4, 16, 352.0, &[]), "zero size"),
        ("neg.nii", nifti1(&[4, -3, 2], 4, 16, 352.0, &[]), "negative"),
        // 32767^3 voxels: refused from the header, before any data is read.
        ("huge.nii.gz", gz(&nifti1(&[32767, 32767, 32767], 2, 8, 352.0, &[0; 64])), "limit"),
        ("complex.nii", nifti1(&[2, 2, 1], 32, 64, 352.0, &[0; 32]), "complex"),
        ("dtype.nii", nifti1(&[2, 2, 1], 77, 8, 352.0, &[0; 4]), "datatype 77"),
        ("offset.nii", nifti1(&[2, 2, 1], 2, 8, 100.0, &[0; 4]), "vox_offset"),
        ("short.nii", vec![0x5c, 0x01, 0, 0, 1, 2], "truncated header"),
        ("junk.nii.gz", b"\x1f\x8bnot really gzip".to_vec(), "gzip"),
        ("text.nii", b"hello, this is not a NIfTI file at all".to_vec(), "sizeof_hdr"),
    ];
    for (name, bytes, needle) in cases {
        let p = write(d.path(), name, &bytes);
        let e = err_of(read_volume(&p, DEFAULT_MAX_VOXELS));
        assert!(e.contains(name) && e.contains(needle), "{name}: {e}");
    }
    // The voxel limit is the caller's.
    let p = write(d.path(), "ok.nii", &good);
    assert!(read_volume(&p, 24).is_ok());
    let e = err_of(read_volume(&p, 23));
    assert!(e.contains("ok.nii") && e.contains("4x3x2 = 24 voxels") && e.contains("limit of 23"), "{e}");
    assert!(err_of(read_volume(d.path(), DEFAULT_MAX_VOXELS)).contains("directory"));
}

#[test]
fn slice_reader_takes_nifti2_and_4d() {
    let mm = ReadOptions { windowing: Windowing::MinMax, slice: Some(0) };
    let img = read_image_any(&fx("nibabel/example_nifti2.nii.gz"), &mm).unwrap();
    assert_eq!(img.dimensions(), (32, 20));
    let img = read_image_any(&fx("geom_oblique_4d.nii.gz"), &mm).unwrap();
    assert_eq!(img.dimensions(), (12, 10));
    let s = read_scalar(&fx("geom_oblique_4d.nii.gz"), Some(5)).unwrap();
    let v = read_volume(&fx("geom_oblique.nii.gz"), DEFAULT_MAX_VOXELS).unwrap();
    let SliceData::Scalar(want) = v.slice_values(2, 5) else { panic!() };
    assert_eq!(s.values, want, "first volume of the 4-D file");
    // NIfTI-2 dims near 2^63: the middle slice's offset would overflow; one line, no panic.
    let mut b = std::fs::read(fx("geom_oblique_n2_be.nii")).unwrap();
    b[16 + 24..16 + 32].copy_from_slice(&(i64::MAX - 1).to_be_bytes()); // dim[3]
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("deep.nii");
    std::fs::write(&p, &b).unwrap();
    let e = err_of(read_image_any(&p, &ReadOptions { slice: None, ..mm }));
    assert!(e.contains("deep.nii") && (e.contains("absurd") || e.contains("truncated")), "{e}");
    let e = err_of(read_volume(&p, u64::MAX));
    assert!(e.contains("deep.nii") && e.contains("limit"), "{e}");
    let rgb = read_image_any(&fx("stack/stack.nii.gz"), &ReadOptions { slice: Some(1), ..mm }).unwrap();
    let png = read_rgb(&fx("stack/s1.png")).unwrap();
    assert_eq!(rgb, png);
}

#[test]
fn window_presets_and_parsing() {
    let w = |s: &str| parse_window(s).unwrap();
    let fixed = |width: f64, center: f64| Windowing::Fixed(Window { center, width });
    assert_eq!(w("soft"), fixed(400.0, 40.0));
    assert_eq!(w("LUNG"), fixed(1500.0, -600.0));
    assert_eq!(w("bone"), fixed(1800.0, 400.0));
    assert_eq!(w("brain"), fixed(80.0, 40.0));
    assert_eq!(w("350,50"), fixed(350.0, 50.0));
    assert_eq!(w("1500, -600"), fixed(1500.0, -600.0));
    assert_eq!(w("auto"), Windowing::Auto);
    assert_eq!(w("minmax"), Windowing::MinMax);
    assert_eq!(w("p1,99"), Windowing::Percentile { low: 1.0, high: 99.0 });
    for bad in ["", "soft2", "400", "0,40", "nan,3", "p99,1", "1,2,3"] {
        assert!(parse_window(bad).is_err(), "{bad:?}");
    }
    // Brain window: 0 and 80 HU are the ends, 40 is mid-grey.
    let m = resolve_window(&[], w("brain"), None).unwrap();
    assert_eq!([m.map(-5.0), m.map(0.0), m.map(40.0), m.map(80.0), m.map(500.0)], [0, 0, 129, 255, 255]);
}

#[test]
fn large_percentiles_equal_the_sorted_rule() {
    // More than 2^20 values takes the radix select; the same data sorted gives numpy's rule.
    let n = (1 << 20) + 12345;
    let mut s = 12345u64;
    let vals: Vec<f32> = (0..n)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (s >> 33) as f32 / (1u64 << 31) as f32;
            match i % 97 {
                0 => f32::NAN,
                1 => -1024.0,
                _ => r * 3000.0 - 1000.0,
            }
        })
        .collect();
    let mut sorted: Vec<f32> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_unstable_by(f32::total_cmp);
    let pct = |q: f64| {
        let pos = q / 100.0 * (sorted.len() - 1) as f64;
        let i = pos.floor() as usize;
        let f = pos - i as f64;
        sorted[i] as f64 + (sorted[(i + 1).min(sorted.len() - 1)] as f64 - sorted[i] as f64) * f
    };
    for (lo, hi) in [(0.5, 99.5), (0.0, 100.0), (1.0, 2.0)] {
        let m = resolve_window(&vals, Windowing::Percentile { low: lo, high: hi }, None).unwrap();
        assert_eq!(m, WindowMap::Linear { lo: pct(lo), hi: pct(hi) }, "{lo}, {hi}");
    }
}
