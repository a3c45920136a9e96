//! io: rasters, masks, atomic writes, .npy, NIfTI, DICOM, windowing.

use std::io::Write;
use std::path::PathBuf;

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage};
use vlsm::io::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn err_of<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    let e = format!("{}", r.unwrap_err());
    assert!(!e.contains('\n'), "error is not one line: {e}");
    e
}

fn fixtures() -> PathBuf {
    crate::support::fx("io")
}

#[test]
fn rgb_from_gray_rgba_and_16bit() {
    let d = tmp();
    let p = d.path().join("g.png");
    GrayImage::from_fn(3, 2, |x, y| Luma([(x * 10 + y) as u8])).save(&p).unwrap();
    let img = read_rgb(&p).unwrap();
    assert_eq!(img.dimensions(), (3, 2));
    assert_eq!(img.get_pixel(2, 1).0, [21, 21, 21]);

    let p = d.path().join("a.png");
    RgbaImage::from_pixel(2, 2, Rgba([10, 20, 30, 0])).save(&p).unwrap();
    assert_eq!(read_rgb(&p).unwrap().get_pixel(0, 0).0, [10, 20, 30], "alpha dropped, not composited");

    let p = d.path().join("la.png");
    ImageBuffer::<LumaA<u8>, _>::from_pixel(2, 2, LumaA([77, 5])).save(&p).unwrap();
    assert_eq!(read_rgb(&p).unwrap().get_pixel(1, 1).0, [77, 77, 77]);

    let p = d.path().join("g16.png");
    let g16 = ImageBuffer::<Luma<u16>, _>::from_raw(3, 1, vec![0u16, 257 * 100, 65535]).unwrap();
    g16.save(&p).unwrap();
    let img = read_rgb(&p).unwrap();
    assert_eq!([img.get_pixel(0, 0)[0], img.get_pixel(1, 0)[0], img.get_pixel(2, 0)[0]], [0, 100, 255]);

    for ext in ["jpg", "tif", "bmp"] {
        let p = d.path().join(format!("c.{ext}"));
        RgbImage::from_pixel(8, 4, Rgb([200, 100, 50])).save(&p).unwrap();
        let img = read_rgb(&p).unwrap();
        assert_eq!(img.dimensions(), (8, 4), "{ext}");
        let px = img.get_pixel(3, 2).0;
        assert!(px.iter().zip([200, 100, 50]).all(|(&a, b)| (a as i32 - b).abs() <= 3), "{ext}: {px:?}");
    }
}

#[test]
fn rgb_errors_name_the_file() {
    let d = tmp();
    let missing = d.path().join("nope.png");
    assert!(err_of(read_rgb(&missing)).contains("nope.png"));

    let bad = d.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let e = err_of(read_rgb(&bad));
    assert!(e.contains("bad.png"), "{e}");

    let txt = d.path().join("x.png");
    std::fs::write(&txt, b"hello, not an image").unwrap();
    let e = err_of(read_rgb(&txt));
    assert!(e.contains("x.png") && e.contains("unknown image format"), "{e}");

    // A truncated but well-formed header announcing a huge image.
    let big = d.path().join("big.png");
    std::fs::write(&big, png_header_only(20_000, 20_000)).unwrap();
    let e = err_of(read_rgb(&big));
    assert!(e.contains("big.png") && e.contains("limit"), "{e}");

    let zero = d.path().join("zero.png");
    std::fs::write(&zero, png_header_only(0, 10)).unwrap();
    let e = err_of(read_rgb(&zero));
    assert!(e.contains("zero.png"), "{e}");

    // Truncated pixel data: header fine, decode fails.
    let trunc = d.path().join("trunc.png");
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8, y as u8, 7])))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(read_rgb(&trunc));
    assert!(e.contains("trunc.png"), "{e}");
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn masks_are_binary() {
    let d = tmp();
    let p = d.path().join("m.png");
    GrayImage::from_raw(4, 1, vec![0, 127, 128, 255]).unwrap().save(&p).unwrap();
    assert_eq!(read_mask(&p).unwrap().into_raw(), vec![0, 0, 255, 255]);

    // RGB mask: PIL luma, then > 127. (0,255,0) -> 150; (255,0,0) -> 76; (0,0,255) -> 29.
    let p = d.path().join("rgb.png");
    RgbImage::from_raw(3, 1, vec![0, 255, 0, 255, 0, 0, 0, 0, 255]).unwrap().save(&p).unwrap();
    assert_eq!(read_mask(&p).unwrap().into_raw(), vec![255, 0, 0]);

    // JPEG masks have ringing at edges; after thresholding every value is 0 or 255.
    let p = d.path().join("m.jpg");
    GrayImage::from_fn(32, 32, |x, _| Luma([if x < 16 { 0 } else { 255 }])).save(&p).unwrap();
    let m = read_mask(&p).unwrap();
    assert!(m.iter().all(|&v| v == 0 || v == 255));
    assert_eq!(m.get_pixel(2, 5)[0], 0);
    assert_eq!(m.get_pixel(30, 5)[0], 255);
}

#[test]
fn atomic_writes() {
    let d = tmp();
    let p = d.path().join("sub/dir/out.bin");
    write_atomic(&p, b"one").unwrap();
    write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "temp files left: {names:?}");

    let png = d.path().join("m.png");
    let img = DynamicImage::ImageLuma8(GrayImage::from_raw(2, 1, vec![0, 255]).unwrap());
    write_png_atomic(&png, &img).unwrap();
    assert_eq!(read_mask(&png).unwrap().into_raw(), vec![0, 255]);

    // A parent that is a file: error names the path.
    let file = d.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let e = err_of(write_atomic(&file.join("child.bin"), b"y"));
    assert!(e.contains("child.bin"), "{e}");
}

#[test]
fn npy_roundtrip_and_numpy_bytes() {
    let d = tmp();
    let p = d.path().join("a.npy");
    let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    write_npy_f32(&p, &[2, 3], &data).unwrap();
    assert_eq!(read_npy_f32(&p).unwrap(), (vec![2, 3], data.clone()));
    // Byte-identical to numpy.save(np.arange(6, dtype='<f4').reshape(2, 3) * 0.5 - 1).
    let fx = fixtures().join("a23.npy");
    if fx.exists() {
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&fx).unwrap());
    }
    // numpy's own files read back (1-D and 0-D).
    for (name, shape) in [("v5.npy", vec![5usize]), ("s.npy", vec![])] {
        let fx = fixtures().join(name);
        if fx.exists() {
            let (s, v) = read_npy_f32(&fx).unwrap();
            assert_eq!(s, shape);
            assert_eq!(v.len(), shape.iter().product::<usize>());
        }
    }
    let p1 = d.path().join("v.npy");
    write_npy_f32(&p1, &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(read_npy_f32(&p1).unwrap().0, vec![4]);
    let bytes = std::fs::read(&p1).unwrap();
    assert_eq!((bytes.len() - 16) % 64, 0, "data starts on a 64-byte boundary");

    assert!(err_of(write_npy_f32(&p, &[2, 2], &data)).contains("a.npy"));
    let bad = d.path().join("bad.npy");
    std::fs::write(&bad, &bytes[..bytes.len() - 1]).unwrap();
    assert!(err_of(read_npy_f32(&bad)).contains("bad.npy"));
}

// ---------- NIfTI ----------

fn nifti(dims: &[i16], datatype: i16, bitpix: i16, slope: f32, inter: f32, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[40..42].copy_from_slice(&(dims.len() as i16).to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        h[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[112..116].copy_from_slice(&slope.to_le_bytes());
    h[116..120].copy_from_slice(&inter.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h.extend_from_slice(data);
    h
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn nifti_2d_and_volume_slices() {
    let d = tmp();
    let mm = ReadOptions { windowing: Windowing::MinMax, slice: None };
    // 2-D uint8, 3x2.
    let p = d.path().join("a.nii");
    std::fs::write(&p, nifti(&[3, 2], 2, 8, 0.0, 0.0, &[0, 51, 102, 153, 204, 255])).unwrap();
    let img = read_image_any(&p, &mm).unwrap();
    assert_eq!(img.dimensions(), (3, 2));
    assert_eq!(img.get_pixel(1, 1).0, [204, 204, 204], "x = i, y = j");

    // 3-D int16 volume 2x2x3, slope 2 inter -10; voxel value = 100 * k + idx.
    let mut raw = Vec::new();
    for k in 0..3i16 {
        for idx in 0..4i16 {
            raw.extend_from_slice(&(100 * k + idx).to_le_bytes());
        }
    }
    let vol = nifti(&[2, 2, 3], 4, 16, 2.0, -10.0, &raw);
    let pz = d.path().join("v.nii.gz");
    std::fs::write(&pz, gz(&vol)).unwrap();
    // Slice 2 scaled: 390, 392, 394, 396. Window centered at 393.5 width 4 -> 0, 85?, ...
    let w = ReadOptions { windowing: Windowing::Fixed(Window { center: 393.5, width: 7.0 }), slice: Some(2) };
    let img = read_image_any(&pz, &w).unwrap();
    let row: Vec<u8> = img.pixels().map(|p| p[0]).collect();
    // DICOM linear: ((x - 393) / 6 + 0.5) * 255 -> 390: -0.0 -> 0, 392: 85, 394: 170, 396: 255
    assert_eq!(row, vec![0, 85, 170, 255]);
    // Default slice is the middle one (k = 1): values 190..196 -> min-max 0..255.
    let img = read_image_any(&pz, &mm).unwrap();
    assert_eq!(img.pixels().map(|p| p[0]).collect::<Vec<_>>(), vec![0, 85, 170, 255]);
    // Masks: non-zero after scaling is foreground (slice 0: -10, -8, -6, -4 -> all non-zero).
    let m = read_mask_any(&pz, &ReadOptions { slice: Some(0), ..Default::default() }).unwrap();
    assert!(m.iter().all(|&v| v == 255));
    let pm = d.path().join("m.nii");
    std::fs::write(&pm, nifti(&[2, 2, 1], 2, 8, 0.0, 0.0, &[0, 1, 0, 3])).unwrap();
    assert_eq!(read_mask(&pm).unwrap().into_raw(), vec![0, 255, 0, 255]);

    let e = err_of(read_image_any(&pz, &ReadOptions { slice: Some(3), ..mm }));
    assert!(e.contains("v.nii.gz") && e.contains("slice 3") && e.contains("3 slices"), "{e}");
    let pt = d.path().join("t.nii");
    std::fs::write(&pt, &vol[..vol.len() - 3]).unwrap();
    let e = err_of(read_image_any(&pt, &ReadOptions { slice: Some(2), ..mm }));
    assert!(e.contains("t.nii") && e.contains("truncated"), "{e}");
    let p4 = d.path().join("4d.nii");
    std::fs::write(&p4, nifti(&[2, 2, 1, 2], 2, 8, 0.0, 0.0, &[0; 8])).unwrap();
    // 4-D: the first volume (io_volume.rs checks the values).
    assert_eq!(read_image_any(&p4, &mm).unwrap().dimensions(), (2, 2));
    let pb = d.path().join("junk.nii.gz");
    std::fs::write(&pb, b"\x1f\x8bnot really gzip").unwrap();
    assert!(err_of(read_image_any(&pb, &mm)).contains("junk.nii.gz"));
}

// ---------- DICOM ----------

struct Body {
    explicit: bool,
    out: Vec<u8>,
}

impl Body {
    fn el(&mut self, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
        let out = &mut self.out;
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        if !self.explicit {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            out.extend_from_slice(vr);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(vr);
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(v);
    }
    /// An undefined-length sequence holding one undefined-length item, which the reader must skip.
    fn sequence(&mut self) {
        self.out.extend_from_slice(&[0x08, 0x00, 0x40, 0x11]);
        if self.explicit {
            self.out.extend_from_slice(b"SQ\0\0");
        }
        self.out.extend_from_slice(&[0xFF; 4]);
        self.out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        self.el(0x0008, 0x1150, b"UI", &padded("1.2.3"));
        // A defined-length item inside a nested undefined-length sequence, too.
        self.out.extend_from_slice(&[0x08, 0x00, 0x41, 0x11]);
        if self.explicit {
            self.out.extend_from_slice(b"SQ\0\0");
        }
        self.out.extend_from_slice(&[0xFF; 4]);
        self.out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        self.out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        self.out.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        self.out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
}

fn padded(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(if s.starts_with(|c: char| c.is_ascii_digit()) && s.contains('.') { 0 } else { b' ' });
    }
    v
}

#[derive(Clone)]
struct Dcm<'a> {
    ts: &'a str,
    photometric: &'a str,
    signed: bool,
    slope_inter: Option<(&'a str, &'a str)>,
    window: Option<(&'a str, &'a str)>,
    frames: Option<&'a str>,
    cols: u16,
    rows: u16,
    pixels: Vec<u16>,
}

fn dicom(d: &Dcm) -> Vec<u8> {
    let mut meta = Body { explicit: true, out: vec![0u8; 128] };
    meta.out.extend_from_slice(b"DICM");
    meta.el(0x0002, 0x0001, b"OB", &[0, 1]);
    meta.el(0x0002, 0x0010, b"UI", &padded(d.ts));
    let mut b = Body { explicit: d.ts != "1.2.840.10008.1.2", out: Vec::new() };
    b.el(0x0008, 0x0060, b"CS", &padded("MR"));
    b.sequence();
    b.el(0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    b.el(0x0028, 0x0004, b"CS", &padded(d.photometric));
    if let Some(f) = d.frames {
        b.el(0x0028, 0x0008, b"IS", &padded(f));
    }
    b.el(0x0028, 0x0010, b"US", &d.rows.to_le_bytes());
    b.el(0x0028, 0x0011, b"US", &d.cols.to_le_bytes());
    b.el(0x0028, 0x0100, b"US", &16u16.to_le_bytes());
    b.el(0x0028, 0x0101, b"US", &12u16.to_le_bytes());
    b.el(0x0028, 0x0103, b"US", &(d.signed as u16).to_le_bytes());
    if let Some((c, w)) = d.window {
        b.el(0x0028, 0x1050, b"DS", &padded(c));
        b.el(0x0028, 0x1051, b"DS", &padded(w));
    }
    if let Some((s, i)) = d.slope_inter {
        b.el(0x0028, 0x1052, b"DS", &padded(i));
        b.el(0x0028, 0x1053, b"DS", &padded(s));
    }
    let px: Vec<u8> = d.pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
    b.el(0x7FE0, 0x0010, b"OW", &px);
    meta.out.extend_from_slice(&b.out);
    meta.out
}

fn gray_row(img: &RgbImage) -> Vec<u8> {
    img.pixels().map(|p| p[0]).collect()
}

#[test]
fn dicom_16bit_windowing() {
    let d = tmp();
    // 12 bits stored, signed: 0xFFF is -1, 0x800 is -2048; the high nibble is junk to be masked.
    let base = Dcm {
        ts: "1.2.840.10008.1.2.1",
        photometric: "MONOCHROME2",
        signed: true,
        slope_inter: Some(("2", "-1024")),
        window: Some(("40\\50", "400\\500")),
        frames: None,
        cols: 4,
        rows: 1,
        pixels: vec![0xF000 | 0x0FFF, 0x0000, 0x0100, 0x0800],
    };
    // Values: -1*2-1024 = -1026, -1024, 256*2-1024 = -512, -2048*2-1024 = -5120.
    for ts in ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"] {
        let p = d.path().join(format!("ct-{ts}.dcm"));
        std::fs::write(&p, dicom(&Dcm { ts, ..base.clone() })).unwrap();
        // Auto = the file's first window (40/400): everything here is below -160 -> 0.
        assert_eq!(gray_row(&read_image_any(&p, &ReadOptions::default()).unwrap()), vec![0; 4], "{ts}");
        let w = ReadOptions { windowing: Windowing::Fixed(Window { center: -1000.0, width: 101.0 }), slice: None };
        // ((x + 1000.5) / 100 + 0.5) * 255: -1026 -> 62.0 ; -1024 -> 67.6 ; -512 -> 255 ; -5120 -> 0
        assert_eq!(gray_row(&read_image_any(&p, &w).unwrap()), vec![62, 68, 255, 0], "{ts}");
        let mm = ReadOptions { windowing: Windowing::MinMax, slice: None };
        // (x + 5120) / 4608 * 255: -1026 -> 226.56, -1024 -> 226.67, -512 -> 255, -5120 -> 0
        assert_eq!(gray_row(&read_image_any(&p, &mm).unwrap()), vec![227, 227, 255, 0], "{ts}");
        assert_eq!(read_mask(&p).unwrap().into_raw(), vec![255; 4]);
    }
    // MONOCHROME1 is inverted; unsigned; no window in file -> percentile auto-window.
    let p = d.path().join("mono1.dcm");
    let m1 = Dcm {
        photometric: "MONOCHROME1",
        signed: false,
        slope_inter: None,
        window: None,
        pixels: vec![0, 100, 200, 300],
        ..base.clone()
    };
    std::fs::write(&p, dicom(&m1)).unwrap();
    // Percentile 0.5..99.5 of [0,100,200,300]: 1.5 .. 298.5.
    let px = gray_row(&read_image_any(&p, &ReadOptions::default()).unwrap());
    assert_eq!(px, vec![255, 255 - 85, 255 - 170, 0]);

    // Errors name the file and the problem.
    let p = d.path().join("jpeg.dcm");
    std::fs::write(&p, dicom(&Dcm { ts: "1.2.840.10008.1.2.4.50", ..base.clone() })).unwrap();
    let e = err_of(read_image_any(&p, &ReadOptions::default()));
    assert!(e.contains("jpeg.dcm") && e.contains("1.2.840.10008.1.2.4.50"), "{e}");
    // "NaN" parses as a float but blanked the whole image (#17): any non-finite DS is refused.
    for (slope, win) in [("NaN", None), ("inf", None), ("1", Some(("NaN", "400")))] {
        let p = d.path().join("nan.dcm");
        std::fs::write(&p, dicom(&Dcm { slope_inter: Some((slope, "0")), window: win, ..base.clone() })).unwrap();
        let e = err_of(read_image_any(&p, &ReadOptions::default()));
        assert!(e.contains("nan.dcm") && e.contains("not a finite number"), "{e}");
    }
    let p = d.path().join("multi.dcm");
    std::fs::write(&p, dicom(&Dcm { frames: Some("3"), ..base.clone() })).unwrap();
    let e = err_of(read_image_any(&p, &ReadOptions::default()));
    assert!(e.contains("multi.dcm") && e.contains("multi-frame"), "{e}");
    // Frames x pixels past the object limit: refused from the header (the file is tiny).
    let p = d.path().join("manyframes.dcm");
    std::fs::write(&p, dicom(&Dcm { frames: Some("100"), cols: 2000, rows: 2000, ..base.clone() })).unwrap();
    let e = err_of(read_image_any(&p, &ReadOptions::default()));
    assert!(e.contains("manyframes.dcm") && e.contains("100 frames") && e.contains("more than the limit"), "{e}");
    let p = d.path().join("short.dcm");
    let full = dicom(&base);
    std::fs::write(&p, &full[..full.len() - 3]).unwrap();
    assert!(err_of(read_image_any(&p, &ReadOptions::default())).contains("short.dcm"));
    let p = d.path().join("notdicom.dcm");
    std::fs::write(&p, b"hello").unwrap();
    assert!(err_of(read_image_any(&p, &ReadOptions::default())).contains("notdicom.dcm"));
    let bad = ReadOptions { windowing: Windowing::Fixed(Window { center: 0.0, width: 0.0 }), slice: None };
    let p = d.path().join("ok.dcm");
    std::fs::write(&p, &full).unwrap();
    assert!(err_of(read_image_any(&p, &bad)).contains("width"));
    // Magic without the extension.
    let p = d.path().join("noext");
    std::fs::write(&p, &full).unwrap();
    assert_eq!(read_image_any(&p, &ReadOptions::default()).unwrap().dimensions(), (4, 1));
}

#[test]
fn any_reads_16bit_png_with_windowing_and_8bit_as_rgb() {
    let d = tmp();
    let p = d.path().join("g16.png");
    ImageBuffer::<Luma<u16>, _>::from_raw(4, 1, vec![1000u16, 1100, 1200, 1300]).unwrap().save(&p).unwrap();
    let mm = ReadOptions { windowing: Windowing::MinMax, slice: None };
    assert_eq!(gray_row(&read_image_any(&p, &mm).unwrap()), vec![0, 85, 170, 255]);
    let p8 = d.path().join("c.png");
    RgbImage::from_pixel(2, 2, Rgb([1, 2, 3])).save(&p8).unwrap();
    assert_eq!(read_image_any(&p8, &mm).unwrap(), read_rgb(&p8).unwrap());
}

/// Files written by nibabel/pydicom (tools/make_io_fixtures.py) read back to the values those
/// libraries decode.
#[test]
fn independent_writers_nibabel_pydicom() {
    let dir = fixtures();
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let exp: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = exp.as_object().unwrap();
    assert!(cases.len() >= 6);
    for (key, e) in cases {
        let (name, slice) = key.split_once(':').unwrap();
        let slice = slice.parse::<usize>().ok();
        let s = read_scalar(&dir.join(name), slice).unwrap_or_else(|err| panic!("{key}: {err}"));
        assert_eq!(
            (s.width as u64, s.height as u64),
            (e["width"].as_u64().unwrap(), e["height"].as_u64().unwrap()),
            "{key}"
        );
        let want: Vec<f64> = e["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(s.values.len(), want.len(), "{key}");
        for (i, (&a, &b)) in s.values.iter().zip(&want).enumerate() {
            assert!((a as f64 - b).abs() < 1e-3, "{key}: value {i}: {a} vs {b}");
        }
        if let Some(w) = e.get("window").and_then(|w| w.as_array()) {
            let c: f64 = w[0].as_str().unwrap().parse().unwrap();
            let wd: f64 = w[1].as_str().unwrap().parse().unwrap();
            assert_eq!(s.file_window, Some(Window { center: c, width: wd }), "{key}");
        }
        // And the 8-bit path runs on every one of them.
        let img = read_image_any(&dir.join(name), &ReadOptions { windowing: Windowing::MinMax, slice }).unwrap();
        assert_eq!(img.dimensions(), (s.width, s.height));
        let g: Vec<u8> = img.pixels().map(|p| p[0]).collect();
        assert!(g.contains(&0) && g.contains(&255), "{key}: min-max spans 0..255");
    }
}

/// Truncated and corrupted medical files give errors, never panics.
#[test]
fn corrupt_medical_files_never_panic() {
    let d = tmp();
    let mut n_err = 0;
    for name in ["ct_explicit.dcm", "mr_implicit.dcm", "ct_deflated.dcm", "flat.nii", "vol.nii.gz"] {
        let good = std::fs::read(fixtures().join(name)).unwrap();
        let p = d.path().join(name);
        let mut seed = 12345u64;
        for cut in (0..good.len()).step_by(7) {
            let mut b = good[..cut].to_vec();
            std::fs::write(&p, &b).unwrap();
            n_err += read_image_any(&p, &ReadOptions::default()).is_err() as usize;
            // Flip a few bytes of the full file too.
            b = good.clone();
            for _ in 0..3 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (seed >> 33) as usize % b.len();
                b[i] ^= (seed >> 13) as u8 | 1;
            }
            std::fs::write(&p, &b).unwrap();
            let _ = read_image_any(&p, &ReadOptions::default());
            let _ = read_mask(&p);
        }
    }
    assert!(n_err > 100);
}

/// A small .nii.gz whose header claims 10000x10000x21 bytes (#17): its size comes from the header
/// alone, and reading it streams the stream past the bytes before the slice instead of holding
/// them, so it ends in a one-line error with memory for one slice at most.
#[test]
fn nifti_gz_bombs_are_sized_from_the_header() {
    let d = tmp();
    let p = d.path().join("bomb.nii.gz");
    // 64 MiB of zeros after the header: a 64 KiB file, far short of the slice it claims.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&nifti(&[10000, 10000, 21], 2, 8, 0.0, 0.0, &[])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        e.write_all(&zeros).unwrap();
    }
    let file = e.finish().unwrap();
    assert!(file.len() < 1 << 20, "{}", file.len());
    std::fs::write(&p, &file).unwrap();
    assert_eq!(vlsm::io::image_dimensions(&p).unwrap(), (10000, 10000));
    let e = err_of(read_image_any(&p, &ReadOptions::default()));
    assert!(e.contains("bomb.nii.gz") && e.contains("truncated") && e.contains("1100000352"), "{e}");
    // A vox_offset past any sane file is refused from the header too (it overflowed before).
    let mut h = nifti(&[4, 4], 2, 8, 0.0, 0.0, &[0; 16]);
    h[108..112].copy_from_slice(&1e30f32.to_le_bytes());
    std::fs::write(&p, gz(&h)).unwrap();
    let e = err_of(read_image_any(&p, &ReadOptions::default()));
    assert!(e.contains("bad vox_offset"), "{e}");
    // A negative dimension is named as such, not as a zero size.
    std::fs::write(&p, gz(&nifti(&[-64, 4], 2, 8, 0.0, 0.0, &[0; 16]))).unwrap();
    let e = err_of(read_image_any(&p, &ReadOptions::default()));
    assert!(e.contains("negative"), "{e}");
}
