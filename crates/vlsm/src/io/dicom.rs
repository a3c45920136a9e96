//! Single-frame, uncompressed DICOM (Part 10 files): implicit or explicit VR little endian,
//! and deflated explicit VR little endian. Compressed transfer syntaxes are refused by name.
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
    pixels: Option<Vec<u8>>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    explicit: bool,
    /// Where the top-level element being read starts.
    mark: usize,
    /// A read ran past the end of the bytes.
    short: bool,
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
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
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
    Plain { bytes: &'a [u8], explicit: bool },
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

/// Reads the file meta information; returns the data set that follows it.
fn body(bytes: &[u8]) -> Result<Body<'_>> {
    if bytes.get(128..132) != Some(b"DICM") {
        bail!("not a DICOM Part 10 file (no DICM marker at byte 128)");
    }
    // File meta information: always explicit VR little endian.
    let mut r = Reader { b: bytes, pos: 132, explicit: true, mark: 132, short: false };
    let mut ts = None;
    while r.pos + 2 <= bytes.len() && u16::from_le_bytes([bytes[r.pos], bytes[r.pos + 1]]) == 0x0002 {
        let (tag, _, len) = r.header()?;
        if len == UNDEFINED {
            bail!("undefined length in file meta information");
        }
        let v = r.take(len as usize)?;
        if tag == 0x0002_0010 {
            ts = Some(text(v));
        }
    }
    let ts = ts.ok_or_else(|| anyhow!("no transfer syntax in file meta information"))?;
    let rest = &bytes[r.pos..];
    Ok(match ts.as_str() {
        IMPLICIT_LE => Body::Plain { bytes: rest, explicit: false },
        EXPLICIT_LE => Body::Plain { bytes: rest, explicit: true },
        DEFLATED_LE => Body::Deflated(Inflater {
            dec: flate2::read::DeflateDecoder::new(rest),
            out: Vec::new(),
            eof: false,
            cut: false,
        }),
        EXPLICIT_BE => bail!("explicit VR big endian (retired) is not supported"),
        other => bail!("transfer syntax {other} (compressed) is not supported; only uncompressed DICOM"),
    })
}

/// Collects the top-level attributes from `r.pos` on; stops at the Pixel Data header and returns
/// where its value starts and its length, or `None` at the end of the bytes. `r.mark` is left at
/// the start of the element being read, where a scan of a longer buffer can resume.
fn scan(r: &mut Reader, a: &mut Attrs) -> Result<Option<(usize, u32)>> {
    while r.pos < r.b.len() {
        r.mark = r.pos;
        let (tag, _vr, len) = r.header()?;
        if len == UNDEFINED {
            if tag == PIXEL_DATA {
                bail!("encapsulated (compressed) pixel data is not supported");
            }
            r.skip_sequence(0)?;
            continue;
        }
        if tag == PIXEL_DATA {
            return Ok(Some((r.pos, len)));
        }
        let v = r.take(len as usize)?;
        let us = || if v.len() >= 2 { Some(u16::from_le_bytes([v[0], v[1]])) } else { None };
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

/// The size of the pixel data the attributes describe, checked before any of it is read.
struct Layout {
    rows: usize,
    cols: usize,
    /// Bytes of pixel data they need.
    bytes: u64,
}

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
    if frames != 1.0 {
        bail!("multi-frame DICOM ({frames} frames) is not supported; single-frame only");
    }
    let samples = a.samples.unwrap_or(1) as u64;
    if samples != 1 && samples != 3 {
        bail!("{samples} samples per pixel is not supported (1 or 3)");
    }
    let alloc = a.bits_alloc.ok_or_else(|| anyhow!("no Bits Allocated (0028,0100)"))? as u64;
    if !matches!(alloc, 8 | 16 | 32) {
        bail!("unsupported bit depth: {alloc} bits allocated (8, 16 or 32)");
    }
    let bytes = n * samples * alloc / 8;
    Ok(Layout { rows, cols, bytes })
}

/// The attributes and where the Pixel Data element starts, from the data set; a deflated one is
/// inflated only that far, and never past [`MAX_HEADER_BYTES`].
fn attributes<'a>(body: &mut Body<'a>) -> Result<(Attrs, Option<(usize, u32)>)> {
    let mut a = Attrs::default();
    match body {
        Body::Plain { bytes, explicit } => {
            let mut r = Reader { b: bytes, pos: 0, explicit: *explicit, mark: 0, short: false };
            let px = scan(&mut r, &mut a)?;
            Ok((a, px))
        }
        Body::Deflated(inf) => {
            let (mut at, mut want) = (0, 64 << 10);
            loop {
                inf.fill_to(want.min(MAX_HEADER_BYTES + 1))?;
                let mut r = Reader { b: &inf.out, pos: at, explicit: true, mark: at, short: false };
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
    let mut body = body(bytes)?;
    let (a, px) = attributes(&mut body)?;
    px.ok_or_else(|| anyhow!("no pixel data"))?;
    let l = layout(&a)?;
    Ok((l.cols as u32, l.rows as u32))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded> {
    let mut body = body(bytes)?;
    let (mut a, px) = attributes(&mut body)?;
    let (start, len) = px.ok_or_else(|| anyhow!("no pixel data"))?;
    // Sized before a byte of pixel data is read (or inflated): a small file whose attributes
    // claim a huge image is refused here.
    let l = layout(&a)?;
    a.pixels = Some(match body {
        Body::Plain { bytes, explicit } => {
            let mut r = Reader { b: bytes, pos: start, explicit, mark: start, short: false };
            r.take(len as usize)?.to_vec()
        }
        Body::Deflated(mut inf) => {
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
    });
    pixels(a)
}

fn pixels(a: Attrs) -> Result<Decoded> {
    let data = a.pixels.ok_or_else(|| anyhow!("no pixel data"))?;
    let rows = a.rows.ok_or_else(|| anyhow!("no Rows (0028,0010)"))? as usize;
    let cols = a.cols.ok_or_else(|| anyhow!("no Columns (0028,0011)"))? as usize;
    if rows == 0 || cols == 0 {
        bail!("image has zero size ({cols}x{rows})");
    }
    let samples = a.samples.unwrap_or(1) as usize;
    let alloc = a.bits_alloc.ok_or_else(|| anyhow!("no Bits Allocated (0028,0100)"))? as usize;
    let stored = a.bits_stored.map(|s| s as usize).unwrap_or(alloc);
    let photometric = a.photometric.unwrap_or_else(|| "MONOCHROME2".into());
    let n = rows * cols;
    if samples == 3 {
        if photometric != "RGB" || alloc != 8 {
            bail!("colour DICOM must be 8-bit RGB (got {photometric}, {alloc} bits)");
        }
        if data.len() < n * 3 {
            bail!("pixel data has {} bytes, {cols}x{rows} RGB needs {}", data.len(), n * 3);
        }
        let rgb = if a.planar == Some(1) {
            (0..n).flat_map(|i| [data[i], data[n + i], data[2 * n + i]]).collect()
        } else {
            data[..n * 3].to_vec()
        };
        return Ok(Decoded::Rgb(RgbImage::from_raw(cols as u32, rows as u32, rgb).expect("size matches")));
    }
    if samples != 1 {
        bail!("{samples} samples per pixel is not supported (1 or 3)");
    }
    let invert = match photometric.as_str() {
        "MONOCHROME2" => false,
        "MONOCHROME1" => true,
        p => bail!("photometric interpretation {p} is not supported with 1 sample"),
    };
    if !matches!(alloc, 8 | 16 | 32) || stored == 0 || stored > alloc {
        bail!("unsupported bit depth: {alloc} allocated, {stored} stored");
    }
    let bpp = alloc / 8;
    if data.len() < n * bpp {
        bail!("pixel data has {} bytes, {cols}x{rows} at {alloc} bits needs {}", data.len(), n * bpp);
    }
    let signed = a.signed == Some(1);
    let slope = first_number(&a.slope, "Rescale Slope")?.unwrap_or(1.0);
    let intercept = first_number(&a.intercept, "Rescale Intercept")?.unwrap_or(0.0);
    let mask: u64 = if stored >= 64 { u64::MAX } else { (1u64 << stored) - 1 };
    let values = data[..n * bpp]
        .chunks_exact(bpp)
        .map(|c| {
            let mut raw = [0u8; 8];
            raw[..bpp].copy_from_slice(c);
            let u = u64::from_le_bytes(raw) & mask;
            // Sign-extend from the stored bit width.
            let v = if signed && u >> (stored - 1) & 1 == 1 { u as i64 - (1i64 << stored) } else { u as i64 };
            (v as f64 * slope + intercept) as f32
        })
        .collect();
    let file_window = match (first_number(&a.win_center, "Window Center")?, first_number(&a.win_width, "Window Width")?)
    {
        (Some(center), Some(width)) if width >= 1.0 => Some(Window { center, width }),
        _ => None,
    };
    Ok(Decoded::Gray { width: cols as u32, height: rows as u32, values, file_window, invert })
}
