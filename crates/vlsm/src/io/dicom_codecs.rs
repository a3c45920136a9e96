//! Decoders for encapsulated DICOM pixel data, one frame at a time: RLE Lossless (PackBits
//! segments, written here) and JPEG baseline, extended (8-bit) and lossless (process 14,
//! selection value 1 and others) through `jpeg-decoder`; JPEG 2000 and HTJ2K through OpenJPEG
//! (`j2k`); JPEG-LS with the decoder written here (`jpegls`).

use anyhow::{anyhow, bail, Result};

/// The codec of an encapsulated transfer syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Rle,
    Jpeg,
    JpegLs,
    Jpeg2000,
}

impl Codec {
    /// The codec of an encapsulated transfer syntax; an error for native and unknown ones.
    pub(crate) fn of(ts: &str) -> Result<Codec> {
        Ok(match ts {
            "1.2.840.10008.1.2.5" => Codec::Rle,
            "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70" => Codec::Jpeg,
            "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Codec::JpegLs,
            "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203" => Codec::Jpeg2000,
            t => bail!("transfer syntax {t} is not supported"),
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::Rle => "RLE Lossless",
            Codec::Jpeg => "JPEG",
            Codec::JpegLs => "JPEG-LS",
            Codec::Jpeg2000 => "JPEG 2000",
        }
    }

    /// Whether a fragment starts a new frame's codestream (for objects without an offset table).
    pub(crate) fn starts_frame(self, frag: &[u8]) -> bool {
        match self {
            Codec::Jpeg | Codec::JpegLs => frag.starts_with(&[0xFF, 0xD8]),
            Codec::Jpeg2000 => frag.starts_with(&[0xFF, 0x4F]) || frag.get(4..8) == Some(b"jP  "),
            Codec::Rle => true,
        }
    }
}

/// What the data set says a frame holds.
pub(crate) struct Geometry {
    pub rows: usize,
    pub cols: usize,
    pub samples: usize,
    pub alloc: usize,
    pub photometric: String,
    /// Pixel Representation 1.
    pub signed: bool,
}

/// A decoded frame: little-endian samples of Bits Allocated, interleaved by pixel.
pub(crate) struct Frame {
    pub bytes: Vec<u8>,
    /// The photometric interpretation after decoding, when it changed (JPEG colour is RGB).
    pub photometric: Option<String>,
}

pub(crate) fn decode_frame(codec: Codec, data: &[u8], g: &Geometry) -> Result<Frame> {
    match codec {
        Codec::Rle => rle(data, g).map(|bytes| Frame { bytes, photometric: None }),
        Codec::Jpeg => jpeg(data, g),
        Codec::Jpeg2000 => jpeg2000(data, g),
        Codec::JpegLs => jpeg_ls(data, g),
    }
}

/// One PackBits segment, into exactly `n` bytes (a longer one is cut, as pydicom does).
fn packbits(src: &[u8], n: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < src.len() && out.len() < n {
        let h = src[i] as i8;
        i += 1;
        if h >= 0 {
            let k = h as usize + 1;
            let end = (i + k).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if h != -128 {
            let Some(&b) = src.get(i) else { break };
            i += 1;
            out.extend(std::iter::repeat_n(b, (1 - h as isize) as usize));
        }
    }
    if out.len() < n {
        bail!("an RLE segment decodes to {} bytes, the frame needs {n}", out.len());
    }
    out.truncate(n);
    Ok(out)
}

fn rle(data: &[u8], g: &Geometry) -> Result<Vec<u8>> {
    if data.len() < 64 {
        bail!("RLE header is cut ({} bytes, 64 needed)", data.len());
    }
    let word = |i: usize| u32::from_le_bytes([data[i * 4], data[i * 4 + 1], data[i * 4 + 2], data[i * 4 + 3]]) as usize;
    let nseg = word(0);
    let bpp = g.alloc / 8;
    if nseg != g.samples * bpp {
        bail!("RLE frame has {nseg} segments, {} samples of {} bits need {}", g.samples, g.alloc, g.samples * bpp);
    }
    let offs: Vec<usize> = (1..=nseg).map(word).collect();
    let n = g.rows * g.cols;
    let mut out = vec![0u8; n * g.samples * bpp];
    for s in 0..nseg {
        let (a, b) = (offs[s], if s + 1 < nseg { offs[s + 1] } else { data.len() });
        if a < 64 || a > b || b > data.len() {
            bail!("RLE segment {s} has a bad offset {a}");
        }
        let seg = packbits(&data[a..b], n)?;
        // Segment order: per sample, most significant byte first; out is little endian.
        let (c, byte) = (s / bpp, bpp - 1 - s % bpp);
        for (p, v) in seg.into_iter().enumerate() {
            out[(p * g.samples + c) * bpp + byte] = v;
        }
    }
    Ok(out)
}

/// What pydicom reads from a JPEG codestream's markers before decoding it.
#[derive(Default)]
struct JpegInfo {
    /// The frame header's marker (0xC0 baseline, 0xC1 extended, 0xC3 lossless, ...).
    sof: u8,
    precision: u8,
    component_ids: Vec<u8>,
    jfif: bool,
    /// An Adobe APP14 marker with its transform byte.
    adobe: bool,
}

/// The marker segments up to the first scan (bounds checked; a cut header gives what was read).
fn jpeg_info(data: &[u8]) -> JpegInfo {
    let mut info = JpegInfo::default();
    let mut i = 2;
    while i + 4 <= data.len() && data[i] == 0xFF {
        let m = data[i + 1];
        if m == 0xFF {
            i += 1;
            continue;
        }
        if m == 0xD8 || (0xD0..=0xD7).contains(&m) || m == 0x01 {
            i += 2;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        let seg = &data[(i + 4).min(data.len())..(i + 2 + len).min(data.len())];
        match m {
            0xDA | 0xD9 => break,
            0xE0 if seg.starts_with(b"JFIF") => info.jfif = true,
            // Pillow keeps an Adobe marker's transform (and pydicom lets it convert) only when
            // the segment reaches the transform byte.
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => info.adobe = true,
            0xC0..=0xCF if m != 0xC4 && m != 0xC8 && m != 0xCC && seg.len() >= 6 => {
                info.sof = m;
                info.precision = seg[0];
                let n = seg[5] as usize;
                info.component_ids = (0..n).filter_map(|c| seg.get(6 + 3 * c).copied()).collect();
            }
            _ => {}
        }
        i += 2 + len;
    }
    info
}

/// JPEG as pydicom 3 decodes it with Pillow (libjpeg-turbo): 8-bit DCT frames (baseline,
/// extended, progressive, arithmetic) through libjpeg-turbo's decoder (`io::jpeg`); lossless and
/// 12-bit frames, which Pillow does not read, through `jpeg-decoder`. Colour: the photometric
/// interpretation is conformed to the codestream as pydicom does (component ids "RGB" make it
/// RGB; a JFIF marker makes a non-YBR one YBR_FULL_422); libjpeg converts to RGB only when an
/// Adobe APP14 marker is present, else the samples come as coded and a YBR photometric is
/// converted afterwards with pydicom's arithmetic.
fn jpeg(data: &[u8], g: &Geometry) -> Result<Frame> {
    let info = jpeg_info(data);
    if info.precision == 8 && matches!(info.sof, 0xC0 | 0xC1 | 0xC2 | 0xC9 | 0xCA) && matches!(g.samples, 1 | 3) {
        // libjpeg fills a cut scan with grey and carries on; Pillow (so pydicom) refuses it.
        if !super::raster::jpeg_complete(data) {
            bail!("truncated JPEG (no end-of-image marker after the scan)");
        }
        let px = super::jpeg::decode_dicom_frame(data, g.cols, g.rows, g.samples, g.samples == 3 && info.adobe)?;
        let photometric = if g.samples == 3 {
            let rgb_ids = info.component_ids == b"RGB" || info.component_ids == b"rgb";
            let pi = if rgb_ids {
                "RGB"
            } else if info.jfif && !g.photometric.contains("YBR") {
                "YBR_FULL"
            } else {
                g.photometric.as_str()
            };
            Some(if pi == "YBR_FULL_422" { "YBR_FULL".to_string() } else { pi.to_string() })
        } else {
            None
        };
        let bytes = pack(px.iter().map(|&v| v as i64), g.alloc, px.len())?;
        return Ok(Frame { bytes, photometric });
    }
    jpeg_decoder_frame(data, g)
}

fn jpeg_decoder_frame(data: &[u8], g: &Geometry) -> Result<Frame> {
    use jpeg_decoder::{ColorTransform, Decoder, PixelFormat};
    let mut d = Decoder::new(data);
    // The colour transform follows the codestream's markers (Adobe APP14, JFIF, component ids)
    // as libjpeg under Pillow does; a codestream with neither marker in an RGB data set holds
    // RGB (as pydicom returns it).
    let marked = |m: u8| data.windows(2).take(4096).any(|w| w == [0xFF, m]);
    if g.samples == 3 && g.photometric == "RGB" && !marked(0xEE) && !marked(0xE0) {
        d.set_color_transform(ColorTransform::RGB);
    }
    d.set_max_decoding_buffer_size(g.rows * g.cols * g.samples * 2 + 1024);
    let px = d.decode().map_err(|e| anyhow!("{e}"))?;
    let info = d.info().ok_or_else(|| anyhow!("no frame header"))?;
    if info.width as usize != g.cols || info.height as usize != g.rows {
        bail!("codestream is {}x{}, the data set says {}x{}", info.width, info.height, g.cols, g.rows);
    }
    let (bytes, photometric) = match (info.pixel_format, g.samples, g.alloc) {
        (PixelFormat::L8, 1, 8) => (px, None),
        (PixelFormat::L8, 1, 16) => (px.iter().flat_map(|&v| [v, 0]).collect(), None),
        (PixelFormat::L16, 1, 16) => {
            (px.chunks_exact(2).flat_map(|c| u16::from_ne_bytes([c[0], c[1]]).to_le_bytes()).collect(), None)
        }
        (PixelFormat::RGB24, 3, 8) => (px, Some("RGB".to_string())),
        (f, s, a) => bail!("codestream gives {f:?}, the data set says {s} samples of {a} bits"),
    };
    Ok(Frame { bytes, photometric })
}

/// Samples as little-endian words of `alloc` bits (two's complement); an error if one does not fit.
fn pack(values: impl Iterator<Item = i64>, alloc: usize, n: usize) -> Result<Vec<u8>> {
    let bpp = alloc / 8;
    if !(1..=4).contains(&bpp) || !alloc.is_multiple_of(8) {
        bail!("{alloc} bits allocated is not read for compressed data");
    }
    let mut out = Vec::with_capacity(n * bpp);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes()[..bpp]);
    }
    Ok(out)
}

/// JPEG 2000 through OpenJPEG, with pydicom's handling of the result (Pillow plugin): a
/// codestream whose signedness disagrees with Pixel Representation gives what pydicom gives
/// (unsigned codestream, signed data set: the value sign-extended from the codestream's
/// precision for monochrome data; signed codestream, unsigned data set: the value offset by half
/// the range). YBR_RCT/YBR_ICT come out RGB (OpenJPEG undoes the component transform).
fn jpeg2000(data: &[u8], g: &Geometry) -> Result<Frame> {
    let img = super::j2k::decode(data, g.cols, g.rows, g.samples)?;
    let mono = g.photometric.starts_with("MONOCHROME");
    let n = g.rows * g.cols;
    for c in &img.comps {
        if c.prec as usize > g.alloc {
            bail!("codestream precision {} is more than {} bits allocated", c.prec, g.alloc);
        }
    }
    let value = |c: &super::j2k::Component, v: i32| -> i64 {
        let (v, p) = (v as i64, c.prec);
        match (c.signed, g.signed) {
            (false, true) if mono && v >> (p - 1) & 1 == 1 => v - (1i64 << p),
            (true, false) => v + (1i64 << (p - 1)),
            _ => v,
        }
    };
    let values = (0..n * g.samples).map(|i| {
        let c = &img.comps[i % g.samples];
        value(c, c.data[i / g.samples])
    });
    let bytes = pack(values, g.alloc, n * g.samples)?;
    let photometric = matches!(g.photometric.as_str(), "YBR_RCT" | "YBR_ICT").then(|| "RGB".to_string());
    Ok(Frame { bytes, photometric })
}

/// JPEG-LS (`jpegls`), with pydicom's sign handling: JPEG-LS has no signedness, so a signed data
/// set's samples are sign-extended from the codestream's precision.
fn jpeg_ls(data: &[u8], g: &Geometry) -> Result<Frame> {
    let img = super::jpegls::decode(data, g.cols, g.rows, g.samples)?;
    let p = img.precision;
    if p as usize > g.alloc {
        bail!("codestream precision {p} is more than {} bits allocated", g.alloc);
    }
    let values = img.samples.iter().map(|&v| {
        let v = v as i64;
        if g.signed && v >> (p - 1) & 1 == 1 {
            v - (1i64 << p)
        } else {
            v
        }
    });
    let bytes = pack(values, g.alloc, img.samples.len())?;
    Ok(Frame { bytes, photometric: None })
}
