//! DICOM Segmentation writer (SOP class 1.2.840.10008.5.1.4.1.1.66.4): a binary SEG over a
//! [`DicomSeries`], one segment per label, one frame per segment and slice (segment-major),
//! explicit VR little endian, 1-bit packed pixel data. The object references every source
//! instance (Referenced Series Sequence and each frame's Derivation Image Sequence), shares the
//! series' Frame of Reference, study and patient, and carries per-frame plane positions and
//! dimension indices (segment number, then position), as highdicom reads them.

use std::path::Path;

use anyhow::{bail, Result};

use super::dicom_series::DicomSeries;
use super::hash::Fnv64;

const SEG_CLASS: &str = "1.2.840.10008.5.1.4.1.1.66.4";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLEMENTATION_UID: &str = "2.25.140736513942116938718463271650622217519";

/// What the writer needs besides the series and the masks.
#[derive(Debug, Clone)]
pub struct SegOptions {
    /// Seeds the new UIDs (Series, SOP Instance, Dimension Organization): equal seeds give equal
    /// files, for goldens; `None` seeds from the clock.
    pub uid_seed: Option<u64>,
    pub series_number: u32,
    pub series_description: String,
    /// Algorithm name and version (Segmentation Algorithm Identification).
    pub algorithm: (String, String),
}

impl Default for SegOptions {
    fn default() -> Self {
        SegOptions {
            uid_seed: None,
            series_number: 9022,
            series_description: "vlsm segmentation".into(),
            algorithm: ("vlsm".into(), env!("CARGO_PKG_VERSION").into()),
        }
    }
}

/// An element writer (explicit VR little endian); values are padded to even length.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn raw(&mut self, tag: u32, vr: &[u8; 2], v: &[u8]) {
        let pad = v.len() % 2;
        let len = v.len() + pad;
        self.0.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        self.0.extend_from_slice(&((tag & 0xFFFF) as u16).to_le_bytes());
        self.0.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT" | b"UC" | b"UR") {
            self.0.extend_from_slice(&[0, 0]);
            self.0.extend_from_slice(&(len as u32).to_le_bytes());
        } else {
            self.0.extend_from_slice(&(len as u16).to_le_bytes());
        }
        self.0.extend_from_slice(v);
        if pad == 1 {
            self.0.push(if matches!(vr, b"UI" | b"OB") { 0 } else { b' ' });
        }
    }
    fn s(&mut self, tag: u32, vr: &[u8; 2], v: &str) -> &mut Self {
        self.raw(tag, vr, v.as_bytes());
        self
    }
    fn us(&mut self, tag: u32, v: u16) -> &mut Self {
        self.raw(tag, b"US", &v.to_le_bytes());
        self
    }
    fn ul(&mut self, tag: u32, v: &[u32]) -> &mut Self {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(tag, b"UL", &b);
        self
    }
    fn at(&mut self, tag: u32, v: u32) -> &mut Self {
        let b: Vec<u8> = [(v >> 16) as u16, (v & 0xFFFF) as u16].iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(tag, b"AT", &b);
        self
    }
    /// A sequence of items (undefined lengths, with delimiters).
    fn sq(&mut self, tag: u32, items: &[W]) -> &mut Self {
        self.0.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        self.0.extend_from_slice(&((tag & 0xFFFF) as u16).to_le_bytes());
        self.0.extend_from_slice(b"SQ\0\0");
        self.0.extend_from_slice(&u32::MAX.to_le_bytes());
        for it in items {
            self.0.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            self.0.extend_from_slice(&u32::MAX.to_le_bytes());
            self.0.extend_from_slice(&it.0);
            self.0.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        }
        self.0.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        self
    }
}

fn code(value: &str, scheme: &str, meaning: &str) -> W {
    let mut w = W::default();
    w.s(0x0008_0100, b"SH", value).s(0x0008_0102, b"SH", scheme).s(0x0008_0104, b"LO", meaning);
    w
}

/// Decimal strings of at most 16 characters.
fn ds(v: &[f64]) -> String {
    v.iter()
        .map(|x| {
            let mut s = format!("{x:.6}");
            while s.len() > 16 || (s.contains('.') && (s.ends_with('0') || s.ends_with('.'))) {
                s.pop();
            }
            if s.is_empty() || s == "-" || s == "-0" {
                "0".to_string()
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("\\")
}

/// A "2.25." UID from 128 bits of the seed and a purpose.
fn uid(seed: u64, purpose: &str) -> String {
    let mut a = Fnv64::default();
    a.update(&seed.to_le_bytes());
    a.update(purpose.as_bytes());
    let mut b = Fnv64::default();
    b.update(purpose.as_bytes());
    b.update(&(!seed).to_le_bytes());
    let v = ((fin(&a) as u128) << 64 | fin(&b) as u128) >> 1;
    format!("2.25.{v}")
}

fn fin(h: &Fnv64) -> u64 {
    u64::from_str_radix(&h.hex(), 16).expect("16 hex digits")
}

/// A label as a Segment Label (LO: at most 64 characters, no backslash, no control characters).
fn lo(label: &str) -> String {
    label
        .chars()
        .map(|c| if c == '\\' || c.is_control() { ' ' } else { c })
        .take(64)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The VR of a kept patient/study attribute.
fn vr_of(tag: u32) -> &'static [u8; 2] {
    match tag {
        0x0010_0010 | 0x0008_0090 => b"PN",
        0x0008_0020 | 0x0010_0030 => b"DA",
        0x0008_0030 => b"TM",
        0x0010_0040 => b"CS",
        0x0010_0020 => b"LO",
        _ => b"SH",
    }
}

/// Writes `masks` (one per label, the series' voxel order, nonzero = inside) as a DICOM SEG to
/// `path`, atomically.
pub fn write_dicom_seg(
    path: &Path,
    series: &DicomSeries,
    labels: &[String],
    masks: &[&[u8]],
    opts: &SegOptions,
) -> Result<()> {
    let bytes = dicom_seg_bytes(series, labels, masks, opts)?;
    super::write::write_atomic(path, &bytes)
}

/// The bytes of the SEG file [`write_dicom_seg`] writes.
pub fn dicom_seg_bytes(series: &DicomSeries, labels: &[String], masks: &[&[u8]], opts: &SegOptions) -> Result<Vec<u8>> {
    let [nx, ny, nz] = series.dims;
    let n = nx * ny * nz;
    if labels.is_empty() || labels.len() != masks.len() {
        bail!("a SEG needs one label per mask ({} labels, {} masks)", labels.len(), masks.len());
    }
    if labels.len() > u16::MAX as usize {
        bail!("too many segments ({})", labels.len());
    }
    if let Some(m) = masks.iter().find(|m| m.len() != n) {
        bail!("a mask has {} voxels, the series {nx}x{ny}x{nz} = {n}", m.len());
    }
    if series.sources.len() != nz {
        bail!("the series has {nz} slices but {} sources", series.sources.len());
    }
    let seed = opts.uid_seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    let seed = {
        let mut h = Fnv64::default();
        h.update(&seed.to_le_bytes());
        h.update(series.series_instance_uid.as_bytes());
        for l in labels {
            h.update(l.as_bytes());
        }
        fin(&h)
    };
    let sop_uid = uid(seed, "sop");
    let series_uid = uid(seed, "series");
    let dim_uid = uid(seed, "dimension");
    let frames = labels.len() * nz;

    // File meta information.
    let mut meta = W::default();
    meta.raw(0x0002_0001, b"OB", &[0, 1]);
    meta.s(0x0002_0002, b"UI", SEG_CLASS)
        .s(0x0002_0003, b"UI", &sop_uid)
        .s(0x0002_0010, b"UI", EXPLICIT_LE)
        .s(0x0002_0012, b"UI", IMPLEMENTATION_UID)
        .s(0x0002_0013, b"SH", "VLSM");
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    let mut group = W::default();
    group.ul(0x0002_0000, &[meta.0.len() as u32]);
    out.extend_from_slice(&group.0);
    out.extend_from_slice(&meta.0);

    let kept = |t: u32| series.patient_study.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_str()).unwrap_or("");
    let mut d = W::default();
    d.s(0x0008_0005, b"CS", "ISO_IR 192")
        .s(0x0008_0008, b"CS", "DERIVED\\PRIMARY")
        .s(0x0008_0016, b"UI", SEG_CLASS)
        .s(0x0008_0018, b"UI", &sop_uid)
        .s(0x0008_0020, b"DA", kept(0x0008_0020))
        .s(0x0008_0030, b"TM", kept(0x0008_0030))
        .s(0x0008_0050, b"SH", kept(0x0008_0050))
        .s(0x0008_0060, b"CS", "SEG")
        .s(0x0008_0070, b"LO", "vlsm")
        .s(0x0008_0090, b"PN", kept(0x0008_0090))
        .s(0x0008_103E, b"LO", &opts.series_description)
        .s(0x0008_1090, b"LO", "vlsm");
    // Referenced Series Sequence: every source instance, once.
    let mut refs: Vec<(&str, &str)> = Vec::new();
    for s in &series.sources {
        if !refs.iter().any(|r| r.1 == s.sop_instance_uid) {
            refs.push((&s.sop_class_uid, &s.sop_instance_uid));
        }
    }
    let inst: Vec<W> = refs
        .iter()
        .map(|(c, i)| {
            let mut w = W::default();
            w.s(0x0008_1150, b"UI", c).s(0x0008_1155, b"UI", i);
            w
        })
        .collect();
    let mut rs = W::default();
    rs.sq(0x0008_114A, &inst).s(0x0020_000E, b"UI", &series.series_instance_uid);
    d.sq(0x0008_1115, &[rs]);
    for t in [0x0010_0010, 0x0010_0020, 0x0010_0030, 0x0010_0040] {
        d.s(t, vr_of(t), kept(t));
    }
    d.s(0x0018_1020, b"LO", env!("CARGO_PKG_VERSION"))
        .s(0x0020_000D, b"UI", &series.study_instance_uid)
        .s(0x0020_000E, b"UI", &series_uid)
        .s(0x0020_0010, b"SH", kept(0x0020_0010))
        .s(0x0020_0011, b"IS", &opts.series_number.to_string())
        .s(0x0020_0013, b"IS", "1")
        .s(0x0020_0052, b"UI", &series.frame_of_reference_uid)
        .s(0x0020_1040, b"LO", "");
    let mut org = W::default();
    org.s(0x0020_9164, b"UI", &dim_uid);
    d.sq(0x0020_9221, &[org]);
    let mut i1 = W::default();
    i1.s(0x0020_9164, b"UI", &dim_uid).at(0x0020_9165, 0x0062_000B).at(0x0020_9167, 0x0062_000A);
    let mut i2 = W::default();
    i2.s(0x0020_9164, b"UI", &dim_uid).at(0x0020_9165, 0x0020_0032).at(0x0020_9167, 0x0020_9113);
    d.sq(0x0020_9222, &[i1, i2]);
    d.us(0x0028_0002, 1)
        .s(0x0028_0004, b"CS", "MONOCHROME2")
        .s(0x0028_0008, b"IS", &frames.to_string())
        .us(0x0028_0010, ny as u16)
        .us(0x0028_0011, nx as u16)
        .us(0x0028_0100, 1)
        .us(0x0028_0101, 1)
        .us(0x0028_0102, 0)
        .us(0x0028_0103, 0)
        .s(0x0028_2110, b"CS", "00")
        .s(0x0062_0001, b"CS", "BINARY");
    let segs: Vec<W> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let mut alg = W::default();
            alg.sq(0x0066_002F, &[code("123110", "DCM", "Artificial Intelligence")])
                .s(0x0066_0031, b"LO", &opts.algorithm.1)
                .s(0x0066_0036, b"LO", &opts.algorithm.0);
            let mut w = W::default();
            w.sq(0x0062_0003, &[code("91723000", "SCT", "Anatomical Structure")]).us(0x0062_0004, i as u16 + 1).s(
                0x0062_0005,
                b"LO",
                &lo(label),
            );
            if lo(label) != label.trim() {
                // The whole prompt, when the label had to be cut or cleaned.
                w.s(0x0062_0006, b"ST", &label.chars().filter(|c| !c.is_control()).collect::<String>());
            }
            w.sq(0x0062_0007, &[alg])
                .s(0x0062_0008, b"CS", "AUTOMATIC")
                .s(0x0062_0009, b"LO", &opts.algorithm.0)
                .sq(0x0062_000F, &[code("85756007", "SCT", "Tissue")]);
            w
        })
        .collect();
    d.sq(0x0062_0002, &segs);
    d.s(0x0070_0080, b"CS", "VLSM").s(0x0070_0081, b"LO", "text-prompted segmentation").s(0x0070_0084, b"PN", "");
    // Shared functional groups: orientation and pixel measures.
    let dirs = series.directions;
    let mut po = W::default();
    po.s(0x0020_0037, b"DS", &ds(&[dirs[0][0], dirs[0][1], dirs[0][2], dirs[1][0], dirs[1][1], dirs[1][2]]));
    let mut pm = W::default();
    pm.s(0x0018_0050, b"DS", &ds(&[series.spacing[2]])).s(0x0018_0088, b"DS", &ds(&[series.spacing[2]])).s(
        0x0028_0030,
        b"DS",
        &ds(&[series.spacing[1], series.spacing[0]]),
    );
    let mut shared = W::default();
    shared.sq(0x0020_9116, &[po]).sq(0x0028_9110, &[pm]);
    d.sq(0x5200_9229, &[shared]);
    let mut per = Vec::with_capacity(frames);
    for s in 0..labels.len() {
        for (k, src) in series.sources.iter().enumerate() {
            let mut si = W::default();
            si.s(0x0008_1150, b"UI", &src.sop_class_uid).s(0x0008_1155, b"UI", &src.sop_instance_uid);
            if let Some(f) = src.frame {
                si.s(0x0008_1160, b"IS", &(f + 1).to_string());
            }
            si.s(0x0028_135A, b"CS", "YES");
            si.sq(0x0040_A170, &[code("121322", "DCM", "Source image for image processing operation")]);
            let mut der = W::default();
            der.sq(0x0008_2112, &[si]).sq(0x0008_9215, &[code("113076", "DCM", "Segmentation")]);
            let mut fc = W::default();
            fc.ul(0x0020_9157, &[s as u32 + 1, k as u32 + 1]);
            let mut pp = W::default();
            pp.s(0x0020_0032, b"DS", &ds(&src.position));
            let mut sid = W::default();
            sid.us(0x0062_000B, s as u16 + 1);
            let mut f = W::default();
            f.sq(0x0008_9124, &[der]).sq(0x0020_9111, &[fc]).sq(0x0020_9113, &[pp]).sq(0x0062_000A, &[sid]);
            per.push(f);
        }
    }
    d.sq(0x5200_9230, &per);
    // Pixel data: frames back to back, bits least significant first, no padding between frames.
    let plane = nx * ny;
    let mut bits = vec![0u8; (frames * plane).div_ceil(8)];
    let mut at = 0usize;
    for m in masks {
        for &v in m.iter() {
            if v != 0 {
                bits[at / 8] |= 1 << (at % 8);
            }
            at += 1;
        }
        debug_assert_eq!(m.len(), nz * plane);
    }
    d.raw(0x7FE0_0010, b"OB", &bits);
    out.extend_from_slice(&d.0);
    Ok(out)
}
