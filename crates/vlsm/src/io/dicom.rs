//! DICOM files: Part 10 with or without the 128-byte preamble, or a bare data set without meta
//! information (the VR guessed from the first element, as pydicom's `force=True`). Transfer
//! syntaxes: implicit and explicit VR little endian, explicit VR big endian, deflated explicit
//! VR little endian, and the encapsulated ones `dicom_codecs` decodes (RLE Lossless, JPEG
//! baseline/extended/lossless, JPEG-LS, JPEG 2000 and HTJ2K; JPEG 12-bit DCT is refused). Single- and
//! multi-frame; 1, 8, 16 or 32 bits allocated; 1 or 3 samples.
//!
//! A deflated data set is inflated as it is parsed: the header at most [`MAX_HEADER_BYTES`],
//! then exactly the pixel bytes that Rows x Columns x frames x samples x Bits Allocated need,
//! once those are known to be within the pixel limit (a decompression bomb is refused before
//! it is inflated).

use std::io::Read;

use anyhow::{anyhow, bail, Result};
use image::RgbImage;

use super::types::{count_inflated, Decoded, Window, MAX_PIXELS};

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const UNDEFINED: u32 = 0xFFFF_FFFF;
const PIXEL_DATA: u32 = 0x7FE0_0010;

/// The attributes we need, collected from the top-level data set.
#[derive(Default)]
struct Attrs {
    rows: Option<u16>,
    cols: Option<u16>,
    samples: Option<u16>,
    bits_alloc: Option<u16>,
    bits_stored: Option<u16>,
    signed: Option<u16>,
    planar: Option<u16>,
    photometric: Option<String>,
    frames: Option<String>,
    slope: Option<String>,
    intercept: Option<String>,
    win_center: Option<String>,
    win_width: Option<String>,
    /// Parsed sequences of [`wanted_sequence`] tags (the functional groups).
    sequences: Vec<(u32, Vec<Item>)>,
    /// [`KEPT`] attributes as text: tag, VR (as in the file; "UN" when implicit), value.
    kept: Vec<(u32, [u8; 2], String)>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    explicit: bool,
    /// Where the top-level element being read starts.
    mark: usize,
    /// A read ran past the end of the bytes.
    short: bool,
    /// Explicit VR big endian (retired).
    big: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            self.short = true;
            bail!("truncated at byte {} (needs {n} more)", self.pos)
        };
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(if self.big { u16::from_be_bytes([s[0], s[1]]) } else { u16::from_le_bytes([s[0], s[1]]) })
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    fn tag(&mut self) -> Result<u32> {
        let g = self.u16()? as u32;
        let e = self.u16()? as u32;
        Ok(g << 16 | e)
    }
    /// Reads an element header: (tag, vr, length).
    fn header(&mut self) -> Result<(u32, [u8; 2], u32)> {
        let tag = self.tag()?;
        // Item and delimiter tags have no VR in any transfer syntax.
        if !self.explicit || tag >> 16 == 0xFFFE {
            return Ok((tag, *b"UN", self.u32()?));
        }
        let vr: [u8; 2] = self.take(2)?.try_into()?;
        let long = matches!(
            &vr,
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"UC" | b"UN" | b"UR" | b"UT" | b"SV" | b"UV"
        );
        let len = if long {
            self.take(2)?;
            self.u32()?
        } else {
            self.u16()? as u32
        };
        Ok((tag, vr, len))
    }
    /// Skips an undefined-length sequence, up to and including its delimiter.
    fn skip_sequence(&mut self, depth: usize) -> Result<()> {
        if depth > 32 {
            bail!("sequences nested too deeply");
        }
        loop {
            let tag = self.tag()?;
            let len = self.u32()?;
            match tag {
                0xFFFE_E0DD => return Ok(()),
                0xFFFE_E000 if len != UNDEFINED => {
                    self.take(len as usize)?;
                }
                0xFFFE_E000 => loop {
                    let (t, _, l) = self.header()?;
                    if t == 0xFFFE_E00D {
                        break;
                    }
                    if l == UNDEFINED {
                        self.skip_sequence(depth + 1)?;
                    } else {
                        self.take(l as usize)?;
                    }
                },
                t => bail!("unexpected tag ({:04X},{:04X}) inside a sequence", t >> 16, t & 0xFFFF),
            }
        }
    }
}

/// A value as text, padding trimmed; control characters (which no text VR allows, and which
/// would break an error message's one line) become U+FFFD.
fn text(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    s.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

/// First value of a multi-valued decimal string such as "40\\400".
fn first_number(s: &Option<String>, what: &str) -> Result<Option<f64>> {
    match s {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => {
            let f = s.split('\\').next().unwrap_or("").trim();
            // "NaN" and "inf" parse, but no DS value may be either (and NaN blanks the image).
            match f.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(anyhow!("bad {what} {s:?} (not a finite number)")),
            }
        }
    }
}

/// Most bytes a deflated data set may inflate to before its pixel data (the header): far past
/// any real header, and a bomb of private elements stops here.
pub(crate) const MAX_HEADER_BYTES: usize = 64 << 20;

/// The data set after the file meta information: in the file, or being inflated.
enum Body<'a> {
    Plain { bytes: &'a [u8], explicit: bool, big: bool },
    Deflated(Inflater<'a>),
}

/// A deflated data set inflated on demand, never past what the caller asks for.
struct Inflater<'a> {
    dec: flate2::read::DeflateDecoder<&'a [u8]>,
    out: Vec<u8>,
    /// The stream has ended, or is cut.
    eof: bool,
    /// The stream is cut (no final block).
    cut: bool,
}

impl Inflater<'_> {
    /// Inflates until `n` bytes are out or the stream ends (a cut stream counts as ended: the
    /// callers say what was missing).
    fn fill_to(&mut self, n: usize) -> Result<()> {
        if self.eof || self.out.len() >= n {
            return Ok(());
        }
        let (had, want) = (self.out.len(), (n - self.out.len()) as u64);
        let r = (&mut self.dec).take(want).read_to_end(&mut self.out);
        let got = (self.out.len() - had) as u64;
        count_inflated(got);
        match r {
            Ok(_) => self.eof = got < want,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => (self.eof, self.cut) = (true, true),
            Err(e) => bail!("cannot inflate deflated data set: {e}"),
        }
        Ok(())
    }
}

/// Reads the file meta information; returns the data set that follows it and its transfer
/// syntax. A file without the 128-byte preamble, or without a meta header at all, is read as
/// pydicom reads it with `force=True`: the VR (explicit or implicit, little endian) is guessed
/// from the first element.
fn body(bytes: &[u8]) -> Result<(Body<'_>, String)> {
    let start = if bytes.get(128..132) == Some(b"DICM") {
        132
    } else if bytes.get(..4) == Some(b"DICM") {
        4
    } else {
        0
    };
    let group = |at: usize| bytes.get(at..at + 2).map(|g| u16::from_le_bytes([g[0], g[1]]));
    let mut ts = None;
    let mut pos = start;
    if group(start) == Some(0x0002) {
        // File meta information: always explicit VR little endian.
        let mut r = Reader { b: bytes, pos: start, explicit: true, mark: start, short: false, big: false };
        while r.pos + 2 <= bytes.len() && group(r.pos) == Some(0x0002) {
            let (tag, _, len) = r.header()?;
            if len == UNDEFINED {
                bail!("undefined length in file meta information");
            }
            let v = r.take(len as usize)?;
            if tag == 0x0002_0010 {
                ts = Some(text(v));
            }
        }
        pos = r.pos;
    } else if start == 0 {
        // No preamble and no meta: a raw data set, whose first tag must look like one.
        let g = group(0).ok_or_else(|| anyhow!("not a DICOM file (too short)"))?;
        if !(0x0008..=0x0028).contains(&g) || bytes.len() < 8 {
            bail!("not a DICOM file (no DICM marker at byte 128, and no data set at byte 0)");
        }
    }
    let ts = match ts {
        Some(t) => t,
        None => {
            // Guessed like pydicom: two upper-case letters after the first tag mean explicit VR.
            let vr = bytes.get(pos + 4..pos + 6).unwrap_or(b"\0\0");
            if vr.iter().all(|c| c.is_ascii_uppercase()) { EXPLICIT_LE } else { IMPLICIT_LE }.to_string()
        }
    };
    let rest = &bytes[pos..];
    let b = match ts.as_str() {
        IMPLICIT_LE => Body::Plain { bytes: rest, explicit: false, big: false },
        EXPLICIT_BE => Body::Plain { bytes: rest, explicit: true, big: true },
        DEFLATED_LE => Body::Deflated(Inflater {
            dec: flate2::read::DeflateDecoder::new(rest),
            out: Vec::new(),
            eof: false,
            cut: false,
        }),
        // Every other syntax (explicit LE and the encapsulated ones) has an explicit LE data
        // set; one written implicit anyway is read implicit, as pydicom does.
        t if t != EXPLICIT_LE && super::dicom_codecs::Codec::of(t).is_err() => {
            bail!("transfer syntax {t} is not supported")
        }
        _ => {
            let vr = rest.get(4..6).unwrap_or(b"OB");
            Body::Plain { bytes: rest, explicit: vr.iter().all(|c| c.is_ascii_uppercase()), big: false }
        }
    };
    Ok((b, ts))
}

/// Tags of the sequences that are parsed (the rest are skipped).
fn wanted_sequence(tag: u32) -> bool {
    matches!(tag, 0x5200_9229 | 0x5200_9230 | 0x0020_9113 | 0x0020_9116 | 0x0028_9110 | 0x0028_9145 | 0x0020_9111)
}

/// One element of a parsed sequence item.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Bytes(Vec<u8>),
    Seq(Vec<Item>),
}

/// A sequence item: its elements in order.
pub(crate) type Item = Vec<(u32, Value)>;

impl Reader<'_> {
    /// Reads the items of a sequence whose value starts here: `len` bytes, or up to the
    /// sequence delimiter when undefined.
    fn items(&mut self, len: u32, depth: usize) -> Result<Vec<Item>> {
        if depth > 16 {
            bail!("sequences nested too deeply");
        }
        let end = if len == UNDEFINED { None } else { Some(self.pos + len as usize) };
        let mut out = Vec::new();
        loop {
            if end.is_some_and(|e| self.pos >= e) {
                return Ok(out);
            }
            let tag = self.tag()?;
            let ilen = self.u32()?;
            match tag {
                0xFFFE_E0DD => return Ok(out),
                0xFFFE_E000 => {
                    let iend = if ilen == UNDEFINED { None } else { Some(self.pos + ilen as usize) };
                    let mut item = Vec::new();
                    loop {
                        if iend.is_some_and(|e| self.pos >= e) {
                            break;
                        }
                        let (t, vr, l) = self.header()?;
                        if t == 0xFFFE_E00D {
                            break;
                        }
                        let seq = &vr == b"SQ" || l == UNDEFINED || (!self.explicit && self.starts_item(l));
                        if seq {
                            item.push((t, Value::Seq(self.items(l, depth + 1)?)));
                        } else {
                            item.push((t, Value::Bytes(self.take(l as usize)?.to_vec())));
                        }
                    }
                    out.push(item);
                }
                t => bail!("unexpected tag ({:04X},{:04X}) inside a sequence", t >> 16, t & 0xFFFF),
            }
        }
    }

    /// An implicit-VR value of `len` bytes that starts with an item tag is a sequence.
    fn starts_item(&self, len: u32) -> bool {
        len >= 8 && self.b.get(self.pos..self.pos + 4) == Some(&[0xFE, 0xFF, 0x00, 0xE0][..])
    }
}

/// Where the Pixel Data value starts, its length and its VR.
type PixelHeader = (usize, u32, [u8; 2]);

/// Collects the top-level attributes from `r.pos` on; stops at the Pixel Data header and returns
/// where its value starts, its length and its VR, or `None` at the end of the bytes. `r.mark` is
/// left at the start of the element being read, where a scan of a longer buffer can resume.
fn scan(r: &mut Reader, a: &mut Attrs) -> Result<Option<PixelHeader>> {
    while r.pos < r.b.len() {
        r.mark = r.pos;
        let (tag, vr, len) = r.header()?;
        if tag == PIXEL_DATA {
            return Ok(Some((r.pos, len, vr)));
        }
        if wanted_sequence(tag) && (len == UNDEFINED || &vr == b"SQ" || r.starts_item(len)) {
            let items = r.items(len, 0)?;
            a.sequences.push((tag, items));
            continue;
        }
        if len == UNDEFINED {
            r.skip_sequence(0)?;
            continue;
        }
        let v = r.take(len as usize)?;
        let big = r.big;
        let us = || {
            if v.len() >= 2 {
                Some(if big { u16::from_be_bytes([v[0], v[1]]) } else { u16::from_le_bytes([v[0], v[1]]) })
            } else {
                None
            }
        };
        if KEPT.contains(&tag) {
            a.kept.push((tag, vr, text(v)));
        }
        match tag {
            0x0028_0002 => a.samples = us(),
            0x0028_0004 => a.photometric = Some(text(v)),
            0x0028_0006 => a.planar = us(),
            0x0028_0008 => a.frames = Some(text(v)),
            0x0028_0010 => a.rows = us(),
            0x0028_0011 => a.cols = us(),
            0x0028_0100 => a.bits_alloc = us(),
            0x0028_0101 => a.bits_stored = us(),
            0x0028_0103 => a.signed = us(),
            0x0028_1050 => a.win_center = Some(text(v)),
            0x0028_1051 => a.win_width = Some(text(v)),
            0x0028_1052 => a.intercept = Some(text(v)),
            0x0028_1053 => a.slope = Some(text(v)),
            _ => {}
        }
    }
    r.mark = r.pos;
    Ok(None)
}

/// Text attributes kept for the series reader and the SEG writer (patient, study, series,
/// instance and geometry).
pub(crate) const KEPT: &[u32] = &[
    0x0008_0016, // SOP Class UID
    0x0008_0018, // SOP Instance UID
    0x0008_0020, // Study Date
    0x0008_0030, // Study Time
    0x0008_0050, // Accession Number
    0x0008_0060, // Modality
    0x0008_0090, // Referring Physician's Name
    0x0010_0010, // Patient's Name
    0x0010_0020, // Patient ID
    0x0010_0030, // Patient's Birth Date
    0x0010_0040, // Patient's Sex
    0x0018_0050, // Slice Thickness
    0x0018_0088, // Spacing Between Slices
    0x0020_000D, // Study Instance UID
    0x0020_000E, // Series Instance UID
    0x0020_0010, // Study ID
    0x0020_0011, // Series Number
    0x0020_0013, // Instance Number
    0x0020_0032, // Image Position (Patient)
    0x0020_0037, // Image Orientation (Patient)
    0x0020_0052, // Frame of Reference UID
    0x0028_0030, // Pixel Spacing
];

/// The size of the pixel data the attributes describe, checked before any of it is read.
struct Layout {
    rows: usize,
    cols: usize,
    frames: usize,
    samples: usize,
    alloc: usize,
    /// Bytes of one frame.
    frame_bytes: u64,
    /// Bytes of pixel data they need (all frames).
    bytes: u64,
}

/// Most frames a multi-frame object may claim.
const MAX_FRAMES: u64 = 1 << 16;
/// Most samples (all frames) an object may hold: 2^28, as a NIfTI volume (1 GiB as f32).
const MAX_OBJECT_SAMPLES: u64 = 1 << 28;

fn layout(a: &Attrs) -> Result<Layout> {
    let rows = a.rows.ok_or_else(|| anyhow!("no Rows (0028,0010)"))? as usize;
    let cols = a.cols.ok_or_else(|| anyhow!("no Columns (0028,0011)"))? as usize;
    if rows == 0 || cols == 0 {
        bail!("image has zero size ({cols}x{rows})");
    }
    let n = (rows * cols) as u64;
    if n > MAX_PIXELS {
        bail!("image is {cols}x{rows} = {n} pixels, more than the limit of {MAX_PIXELS}");
    }
    let frames = first_number(&a.frames, "Number of Frames")?.unwrap_or(1.0);
    if frames < 1.0 || frames.fract() != 0.0 || frames > MAX_FRAMES as f64 {
        bail!("bad Number of Frames {frames} (1 to {MAX_FRAMES})");
    }
    let frames = frames as u64;
    let samples = a.samples.unwrap_or(1) as u64;
    if samples != 1 && samples != 3 {
        bail!("{samples} samples per pixel is not supported (1 or 3)");
    }
    // All frames together, before a byte of them is read or inflated (a multi-frame bomb).
    if n * frames * samples > MAX_OBJECT_SAMPLES {
        bail!(
            "{frames} frames of {cols}x{rows}x{samples} = {} samples, more than the limit of {MAX_OBJECT_SAMPLES}",
            n * frames * samples
        );
    }
    let alloc = a.bits_alloc.ok_or_else(|| anyhow!("no Bits Allocated (0028,0100)"))? as u64;
    if !matches!(alloc, 1 | 8 | 16 | 32) {
        bail!("unsupported bit depth: {alloc} bits allocated (1, 8, 16 or 32)");
    }
    if alloc == 1 {
        // Bit-packed (segmentations, overlays): frames follow each other without padding.
        let bits = n * samples * frames;
        return Ok(Layout {
            rows,
            cols,
            frames: frames as usize,
            samples: samples as usize,
            alloc: 1,
            frame_bytes: 0,
            bytes: bits.div_ceil(8),
        });
    }
    let frame_bytes = n * samples * alloc / 8;
    Ok(Layout {
        rows,
        cols,
        frames: frames as usize,
        samples: samples as usize,
        alloc: alloc as usize,
        frame_bytes,
        bytes: frame_bytes * frames,
    })
}

/// The attributes and where the Pixel Data element starts, from the data set; a deflated one is
/// inflated only that far, and never past [`MAX_HEADER_BYTES`].
fn attributes(body: &mut Body<'_>) -> Result<(Attrs, Option<PixelHeader>)> {
    let mut a = Attrs::default();
    match body {
        Body::Plain { bytes, explicit, big } => {
            let mut r = Reader { b: bytes, pos: 0, explicit: *explicit, mark: 0, short: false, big: *big };
            let px = scan(&mut r, &mut a)?;
            Ok((a, px))
        }
        Body::Deflated(inf) => {
            let (mut at, mut want) = (0, 64 << 10);
            loop {
                inf.fill_to(want.min(MAX_HEADER_BYTES + 1))?;
                let mut r = Reader { b: &inf.out, pos: at, explicit: true, mark: at, short: false, big: false };
                let res = scan(&mut r, &mut a);
                let (mark, short) = (r.mark, r.short);
                match res {
                    Ok(Some(px)) => return Ok((a, Some(px))),
                    Ok(None) if inf.cut => bail!(
                        "deflated data set ends early: the stream is cut after {} inflated bytes, before the pixel data",
                        inf.out.len()
                    ),
                    Ok(None) if inf.eof => return Ok((a, None)),
                    Err(e) if !short => return Err(e),
                    Err(e) if inf.eof => bail!(
                        "deflated data set ends early: it inflates to {} bytes, cut inside the element at byte {mark} ({e})",
                        inf.out.len()
                    ),
                    _ => {}
                }
                if inf.out.len() > MAX_HEADER_BYTES {
                    bail!("the deflated data set's header (before the pixel data) inflates to more than the limit of {MAX_HEADER_BYTES} bytes");
                }
                at = mark;
                want = want.saturating_mul(2);
            }
        }
    }
}

/// Width and height from the header alone: a deflated data set is inflated only up to the
/// pixel data.
pub(crate) fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    let (mut body, _) = body(bytes)?;
    let (a, px) = attributes(&mut body)?;
    px.ok_or_else(|| anyhow!("no pixel data"))?;
    let l = layout(&a)?;
    Ok((l.cols as u32, l.rows as u32))
}

/// The Series Instance UID of a DICOM image from its header alone (empty when absent); `None`
/// for a DICOM object without pixel data.
pub(crate) fn series_uid(bytes: &[u8]) -> Result<Option<String>> {
    let (mut body, _) = body(bytes)?;
    let (a, px) = attributes(&mut body)?;
    Ok(px.map(|_| a.kept.iter().find(|k| k.0 == 0x0020_000E).map(|k| k.2.clone()).unwrap_or_default()))
}

/// A DICOM object with its pixel data decoded: every frame, as native little-endian samples of
/// Bits Allocated, interleaved (colour by pixel), photometric as after decoding (JPEG colour
/// comes out RGB).
pub(crate) struct Object {
    pub rows: usize,
    pub cols: usize,
    pub frames: usize,
    pub samples: usize,
    pub alloc: usize,
    pub stored: usize,
    pub signed: bool,
    pub photometric: String,
    /// frames x rows x cols x samples x alloc/8 bytes.
    pub data: Vec<u8>,
    pub transfer_syntax: String,
    attrs: Attrs,
}

impl Object {
    /// A kept text attribute (see [`KEPT`]).
    pub fn text(&self, tag: u32) -> Option<&str> {
        self.attrs.kept.iter().find(|k| k.0 == tag).map(|k| k.2.as_str())
    }
    /// A decimal-string attribute's numbers.
    pub fn numbers(&self, tag: u32) -> Option<Vec<f64>> {
        self.text(tag).and_then(parse_numbers)
    }
    /// A top-level parsed sequence (functional groups).
    pub fn sequence(&self, tag: u32) -> Option<&[Item]> {
        self.attrs.sequences.iter().find(|s| s.0 == tag).map(|s| s.1.as_slice())
    }
    pub fn slope_intercept(&self) -> Result<(f64, f64)> {
        Ok((
            first_number(&self.attrs.slope, "Rescale Slope")?.unwrap_or(1.0),
            first_number(&self.attrs.intercept, "Rescale Intercept")?.unwrap_or(0.0),
        ))
    }
    pub fn window(&self) -> Result<Option<Window>> {
        Ok(
            match (
                first_number(&self.attrs.win_center, "Window Center")?,
                first_number(&self.attrs.win_width, "Window Width")?,
            ) {
                (Some(center), Some(width)) if width >= 1.0 => Some(Window { center, width }),
                _ => None,
            },
        )
    }
    /// Samples of one frame as integers (sign-extended from Bits Stored), before rescaling.
    pub fn raw_frame(&self, f: usize) -> Vec<i64> {
        let bpp = self.alloc / 8;
        let per = self.rows * self.cols * self.samples * bpp;
        let stored = self.stored.clamp(1, 64);
        let mask: u64 = if stored >= 64 { u64::MAX } else { (1u64 << stored) - 1 };
        self.data[f * per..(f + 1) * per]
            .chunks_exact(bpp)
            .map(|c| {
                let mut raw = [0u8; 8];
                raw[..bpp].copy_from_slice(c);
                let u = u64::from_le_bytes(raw) & mask;
                if self.signed && u >> (stored - 1) & 1 == 1 {
                    u as i64 - (1i64 << stored)
                } else {
                    u as i64
                }
            })
            .collect()
    }
}

/// The numbers of a backslash-separated decimal string; `None` if any is not a finite number.
pub(crate) fn parse_numbers(s: &str) -> Option<Vec<f64>> {
    s.split('\\').map(|f| f.trim().parse::<f64>().ok().filter(|v| v.is_finite())).collect()
}

/// Reads a DICOM object and decodes all its frames.
pub(crate) fn read_object(bytes: &[u8]) -> Result<Object> {
    let (mut body, ts) = body(bytes)?;
    let (a, px) = attributes(&mut body)?;
    let (start, len, vr) = px.ok_or_else(|| anyhow!("no pixel data"))?;
    // Sized before a byte of pixel data is read (or inflated): a small file whose attributes
    // claim a huge image is refused here.
    let l = layout(&a)?;
    let mut photometric = a.photometric.clone().unwrap_or_else(|| "MONOCHROME2".into());
    let mut planar = a.planar == Some(1) && l.samples == 3;
    let data = match body {
        Body::Plain { bytes, explicit, big } => {
            let mut r = Reader { b: bytes, pos: start, explicit, mark: start, short: false, big };
            if len == UNDEFINED {
                let frags = fragments(&mut r)?;
                let codec = super::dicom_codecs::Codec::of(&ts)?;
                let frames = split_frames(frags, l.frames, codec)?;
                let mut out = Vec::with_capacity(l.bytes as usize);
                for (i, f) in frames.iter().enumerate() {
                    let d = super::dicom_codecs::decode_frame(codec, f, &l_geom(&l, &a))
                        .map_err(|e| anyhow!("frame {i} ({}): {e}", codec.name()))?;
                    if i == 0 {
                        photometric = d.photometric.unwrap_or(photometric);
                        planar = false;
                    }
                    out.extend_from_slice(&d.bytes);
                }
                out
            } else {
                if super::dicom_codecs::Codec::of(&ts).is_ok() {
                    bail!("transfer syntax {ts} needs encapsulated pixel data, but the pixel data is native");
                }
                let avail = bytes.len().saturating_sub(start);
                if (len as usize) > avail {
                    bail!("pixel data claims {len} bytes, the file holds {avail} after its header (truncated)");
                }
                let mut v = r.take(len as usize)?.to_vec();
                if big {
                    swap_big_endian(&mut v, l.alloc, &vr);
                }
                v.truncate(l.bytes as usize);
                v
            }
        }
        Body::Deflated(mut inf) => {
            if len == UNDEFINED {
                bail!("encapsulated pixel data in a deflated data set");
            }
            // Only the bytes the attributes need (the element may be padded, or lie).
            let take = (len as u64).min(l.bytes) as usize;
            inf.fill_to(start + take)?;
            if inf.out.len() < start + take {
                bail!(
                    "deflated data set ends early: the pixel data needs {take} bytes from byte {start}, the stream inflates to {} bytes",
                    inf.out.len()
                );
            }
            let mut out = inf.out;
            out.truncate(start + take);
            out.drain(..start);
            out
        }
    };
    let mut data = data;
    if len != UNDEFINED
        && photometric == "YBR_FULL_422"
        && l.samples == 3
        && l.alloc == 8
        && l.cols % 2 == 0
        && (data.len() as u64) < l.bytes
        && (data.len() as u64) >= l.bytes / 3 * 2
    {
        // Native 4:2:2 (Y0 Y1 Cb Cr for two pixels), expanded to full YBR as pydicom does.
        let pairs = (l.bytes / 6) as usize;
        data = data[..pairs * 4].chunks_exact(4).flat_map(|c| [c[0], c[2], c[3], c[1], c[2], c[3]]).collect();
        photometric = "YBR_FULL".into();
    }
    if (data.len() as u64) < l.bytes {
        let what = if l.frames > 1 { format!("{} frames (multi-frame)", l.frames) } else { "the image".into() };
        bail!(
            "pixel data has {} bytes, {what} of {}x{}x{} at {} bits needs {}",
            data.len(),
            l.cols,
            l.rows,
            l.samples,
            l.alloc,
            l.bytes
        );
    }
    data.truncate(l.bytes as usize);
    let mut l = l;
    if l.alloc == 1 {
        // Unpacked to one byte a sample, least significant bit first.
        let n = l.rows * l.cols * l.samples * l.frames;
        data = (0..n).map(|i| (data[i / 8] >> (i % 8)) & 1).collect();
        l.alloc = 8;
        l.frame_bytes = (l.rows * l.cols * l.samples) as u64;
        l.bytes = n as u64;
    }
    if planar {
        let per = l.frame_bytes as usize;
        let plane = per / 3;
        let bpp = l.alloc / 8;
        for f in data.chunks_exact_mut(per) {
            let src = f.to_vec();
            for p in 0..plane / bpp {
                for c in 0..3 {
                    let (d, s) = ((p * 3 + c) * bpp, c * plane + p * bpp);
                    f[d..d + bpp].copy_from_slice(&src[s..s + bpp]);
                }
            }
        }
    }
    if photometric == "YBR_FULL" && l.samples == 3 && l.alloc == 8 {
        ybr_full_to_rgb(&mut data);
        photometric = "RGB".into();
    }
    let stored = a.bits_stored.map(|s| s as usize).unwrap_or(l.alloc).min(l.alloc);
    if stored == 0 {
        bail!("unsupported bit depth: {} allocated, {stored} stored", l.alloc);
    }
    Ok(Object {
        rows: l.rows,
        cols: l.cols,
        frames: l.frames,
        samples: l.samples,
        alloc: l.alloc,
        stored,
        signed: a.signed == Some(1),
        photometric,
        data,
        transfer_syntax: ts,
        attrs: a,
    })
}

/// YBR_FULL to RGB in place, with pydicom's float32 arithmetic (DICOM PS3.3 C.7.6.3.1.2):
/// rounded half up and clipped to 0..=255.
fn ybr_full_to_rgb(px: &mut [u8]) {
    let m: [[f32; 3]; 3] = [
        [1.0, 1.0, 1.0],
        [0.0, (-0.114f64 * 1.772 / 0.587) as f32, 1.772],
        [1.402, (-0.299f64 * 1.402 / 0.587) as f32, 0.0],
    ];
    for p in px.chunks_exact_mut(3) {
        let v = [p[0] as f32, p[1] as f32 - 128.0, p[2] as f32 - 128.0];
        for c in 0..3 {
            let x = v[0] * m[0][c] + v[1] * m[1][c] + v[2] * m[2][c];
            p[c] = (x + 0.5).floor().clamp(0.0, 255.0) as u8;
        }
    }
}

fn l_geom(l: &Layout, a: &Attrs) -> super::dicom_codecs::Geometry {
    super::dicom_codecs::Geometry {
        rows: l.rows,
        cols: l.cols,
        samples: l.samples,
        alloc: l.alloc,
        photometric: a.photometric.clone().unwrap_or_default(),
        signed: a.signed == Some(1),
    }
}

/// Big-endian samples to little endian: 16- and 32-bit words; 8-bit data stored as OW is
/// byte-swapped in pairs.
fn swap_big_endian(v: &mut [u8], alloc: usize, vr: &[u8; 2]) {
    let w = match alloc {
        8 if vr == b"OW" => 2,
        8 => 1,
        a => a / 8,
    };
    if w > 1 {
        for c in v.chunks_exact_mut(w) {
            c.reverse();
        }
    }
}

/// The items of encapsulated pixel data: the basic offset table, then the fragments.
struct Fragments {
    offsets: Vec<u32>,
    frags: Vec<Vec<u8>>,
}

fn fragments(r: &mut Reader) -> Result<Fragments> {
    let mut items = Vec::new();
    loop {
        let tag = r.tag().map_err(|_| anyhow!("encapsulated pixel data ends early (no sequence delimiter)"))?;
        let len = r.u32()?;
        match tag {
            0xFFFE_E0DD => break,
            0xFFFE_E000 if len != UNDEFINED => items.push(
                r.take(len as usize)
                    .map_err(|_| anyhow!("encapsulated pixel data ends early: fragment {} is cut", items.len()))?
                    .to_vec(),
            ),
            t => bail!("unexpected tag ({:04X},{:04X}) in encapsulated pixel data", t >> 16, t & 0xFFFF),
        }
    }
    if items.is_empty() {
        bail!("encapsulated pixel data has no basic offset table");
    }
    let bot = items.remove(0);
    let offsets = bot.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Fragments { offsets, frags: items })
}

/// The fragments grouped into frames, as pydicom groups them: by the basic offset table when
/// there is one, one fragment per frame when the counts agree, all fragments for one frame, or
/// else by the codestream start markers.
fn split_frames(f: Fragments, frames: usize, codec: super::dicom_codecs::Codec) -> Result<Vec<Vec<u8>>> {
    let Fragments { offsets, frags } = f;
    if frags.is_empty() {
        bail!("encapsulated pixel data has no fragments");
    }
    if frames == 1 {
        return Ok(vec![frags.concat()]);
    }
    if offsets.len() == frames {
        let mut out = vec![Vec::new(); frames];
        let mut pos = 0u64;
        for fr in frags {
            let k = offsets.iter().rposition(|&o| o as u64 <= pos).unwrap_or(0);
            pos += fr.len() as u64 + 8;
            out[k].extend_from_slice(&fr);
        }
        return Ok(out);
    }
    if frags.len() == frames {
        return Ok(frags);
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for fr in frags {
        if codec.starts_frame(&fr) || out.is_empty() {
            out.push(fr);
        } else if let Some(last) = out.last_mut() {
            last.extend_from_slice(&fr);
        }
    }
    if out.len() != frames {
        bail!("encapsulated pixel data: cannot find {frames} frames among the fragments (found {})", out.len());
    }
    Ok(out)
}

/// One frame as the 2-D readers see it: frame `slice` (default the middle one), rescaled.
pub(crate) fn decode(bytes: &[u8], slice: Option<usize>) -> Result<Decoded> {
    let o = read_object(bytes)?;
    let k = match slice {
        Some(k) if k >= o.frames => bail!("frame {k} is out of range: the object has {} frames", o.frames),
        Some(k) => k,
        None => o.frames / 2,
    };
    let (rows, cols) = (o.rows, o.cols);
    if o.samples == 3 {
        if o.photometric != "RGB" || o.alloc != 8 {
            bail!("colour DICOM must be 8-bit RGB (got {}, {} bits)", o.photometric, o.alloc);
        }
        let per = rows * cols * 3;
        let rgb = o.data[k * per..(k + 1) * per].to_vec();
        return Ok(Decoded::Rgb(RgbImage::from_raw(cols as u32, rows as u32, rgb).expect("size matches")));
    }
    let invert = match o.photometric.as_str() {
        "MONOCHROME2" => false,
        "MONOCHROME1" => true,
        p => bail!("photometric interpretation {p} is not supported with 1 sample"),
    };
    let (slope, intercept) = o.slope_intercept()?;
    let values = o.raw_frame(k).into_iter().map(|v| (v as f64 * slope + intercept) as f32).collect();
    let file_window = o.window()?;
    Ok(Decoded::Gray { width: cols as u32, height: rows as u32, values, file_window, invert })
}

/// The decoded pixel data of one DICOM file, before rescaling: what pydicom's `pixel_array`
/// holds (frames, rows, columns, samples; colour as RGB after a JPEG decoder's conversion).
#[derive(Debug, Clone)]
pub struct DicomPixels {
    pub rows: usize,
    pub cols: usize,
    pub frames: usize,
    pub samples: usize,
    pub photometric: String,
    pub transfer_syntax: String,
    /// frames x rows x cols x samples, sign-extended from Bits Stored.
    pub values: Vec<i64>,
}

/// Reads and decodes every frame of a DICOM file; errors are one line naming the file.
pub fn read_dicom_pixels(path: &std::path::Path) -> Result<DicomPixels> {
    let bytes = super::read::read_bytes(path)?;
    let o = read_object(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let values = (0..o.frames).flat_map(|f| o.raw_frame(f)).collect();
    Ok(DicomPixels {
        rows: o.rows,
        cols: o.cols,
        frames: o.frames,
        samples: o.samples,
        photometric: o.photometric,
        transfer_syntax: o.transfer_syntax,
        values,
    })
}
