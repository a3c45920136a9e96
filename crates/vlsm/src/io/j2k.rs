//! JPEG 2000 (and HTJ2K) codestreams decoded by OpenJPEG 2.5 (C, vendored and built by `cc`
//! through `openjpeg-sys`; no cmake, no system library), the decoder pydicom reaches through
//! Pillow or pylibjpeg-openjpeg. The stream is read from memory; OpenJPEG's error messages are
//! collected and the first one becomes the error. The image's size is checked against what the
//! caller expects after the header and before any tile is decoded.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use anyhow::{bail, Result};
use openjpeg_sys as opj;

/// One decoded component: its samples (row-major, `w*h`), precision and signedness.
pub(crate) struct Component {
    pub data: Vec<i32>,
    pub prec: u32,
    pub signed: bool,
}

/// A decoded image: its components, all at the full resolution the caller asked for.
pub(crate) struct Image {
    pub comps: Vec<Component>,
}

struct Source<'a> {
    data: &'a [u8],
    pos: usize,
}

unsafe extern "C" fn read_fn(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    let s = &mut *(user as *mut Source);
    let left = s.data.len() - s.pos;
    if left == 0 {
        return usize::MAX; // (OPJ_SIZE_T)-1: end of stream
    }
    let k = n.min(left);
    ptr::copy_nonoverlapping(s.data.as_ptr().add(s.pos), buf as *mut u8, k);
    s.pos += k;
    k
}

unsafe extern "C" fn skip_fn(n: i64, user: *mut c_void) -> i64 {
    let s = &mut *(user as *mut Source);
    if n < 0 {
        let back = (n.unsigned_abs() as usize).min(s.pos);
        s.pos -= back;
        return -(back as i64);
    }
    let k = (n as u64).min((s.data.len() - s.pos) as u64) as usize;
    s.pos += k;
    k as i64
}

unsafe extern "C" fn seek_fn(n: i64, user: *mut c_void) -> i32 {
    let s = &mut *(user as *mut Source);
    if n < 0 || n as u64 > s.data.len() as u64 {
        return 0;
    }
    s.pos = n as usize;
    1
}

unsafe extern "C" fn error_fn(msg: *const c_char, user: *mut c_void) {
    let errors = &mut *(user as *mut Vec<String>);
    if !msg.is_null() && errors.len() < 8 {
        errors.push(CStr::from_ptr(msg).to_string_lossy().trim().to_string());
    }
}

unsafe extern "C" fn quiet_fn(_msg: *const c_char, _user: *mut c_void) {}

/// Frees the OpenJPEG objects on every path out of [`decode`].
struct Handles {
    codec: *mut opj::opj_codec_t,
    stream: *mut opj::opj_stream_t,
    image: *mut opj::opj_image_t,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was returned by the matching OpenJPEG constructor and
        // is destroyed once, here.
        unsafe {
            if !self.image.is_null() {
                opj::opj_image_destroy(self.image);
            }
            if !self.stream.is_null() {
                opj::opj_stream_destroy(self.stream);
            }
            if !self.codec.is_null() {
                opj::opj_destroy_codec(self.codec);
            }
        }
    }
}

/// An error naming what failed, with OpenJPEG's first message.
fn fail(errors: &[String], what: &str) -> anyhow::Error {
    match errors.first() {
        Some(m) => anyhow::anyhow!("{what}: {m}"),
        None => anyhow::anyhow!("{what}"),
    }
}

/// Whether `data` is a JP2 file (signature box) rather than a bare codestream.
fn is_jp2(data: &[u8]) -> bool {
    data.get(4..8) == Some(b"jP  ")
}

/// Decodes a J2K codestream (or JP2 file) whose image must be `width` x `height` with
/// `samples` components, none subsampled.
pub(crate) fn decode(data: &[u8], width: usize, height: usize, samples: usize) -> Result<Image> {
    if data.len() < 4 {
        bail!("codestream is {} bytes", data.len());
    }
    let format = if is_jp2(data) {
        opj::CODEC_FORMAT::OPJ_CODEC_JP2
    } else if data.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        opj::CODEC_FORMAT::OPJ_CODEC_J2K
    } else {
        bail!("not a JPEG 2000 codestream (no SOC/SIZ marker)");
    };
    let mut errors: Vec<String> = Vec::new();
    let mut src = Source { data, pos: 0 };
    // SAFETY: the codec, stream and image are created and destroyed here only (Handles); the
    // callbacks' user data (`src`, `errors`) outlive them (Handles drops first, declared later).
    unsafe {
        let mut h =
            Handles { codec: opj::opj_create_decompress(format), stream: ptr::null_mut(), image: ptr::null_mut() };
        if h.codec.is_null() {
            bail!("cannot create a JPEG 2000 decoder");
        }
        opj::opj_set_error_handler(h.codec, Some(error_fn), &mut errors as *mut Vec<String> as *mut c_void);
        opj::opj_set_warning_handler(h.codec, Some(quiet_fn), ptr::null_mut());
        opj::opj_set_info_handler(h.codec, Some(quiet_fn), ptr::null_mut());
        let mut params: opj::opj_dparameters_t = std::mem::zeroed();
        opj::opj_set_default_decoder_parameters(&mut params);
        if opj::opj_setup_decoder(h.codec, &mut params) == 0 {
            return Err(fail(&errors, "cannot set up the JPEG 2000 decoder"));
        }
        h.stream = opj::opj_stream_create(1 << 16, 1);
        if h.stream.is_null() {
            bail!("cannot create a JPEG 2000 stream");
        }
        opj::opj_stream_set_user_data(h.stream, &mut src as *mut Source as *mut c_void, None);
        opj::opj_stream_set_user_data_length(h.stream, data.len() as u64);
        opj::opj_stream_set_read_function(h.stream, Some(read_fn));
        opj::opj_stream_set_skip_function(h.stream, Some(skip_fn));
        opj::opj_stream_set_seek_function(h.stream, Some(seek_fn));
        if opj::opj_read_header(h.stream, h.codec, &mut h.image) == 0 || h.image.is_null() {
            return Err(fail(&errors, "bad JPEG 2000 header"));
        }
        let img = &*h.image;
        let (w, ht) = (img.x1.saturating_sub(img.x0) as usize, img.y1.saturating_sub(img.y0) as usize);
        if w != width || ht != height {
            bail!("codestream is {w}x{ht}, the data set says {width}x{height}");
        }
        if img.numcomps as usize != samples {
            bail!("codestream has {} components, the data set says {samples} samples", img.numcomps);
        }
        for c in 0..img.numcomps as usize {
            let cp = &*img.comps.add(c);
            if cp.dx != 1 || cp.dy != 1 {
                bail!("component {c} is subsampled ({}x{}), which is not read", cp.dx, cp.dy);
            }
            if cp.prec == 0 || cp.prec > 24 {
                bail!("component {c} has {} bits", cp.prec);
            }
        }
        if opj::opj_decode(h.codec, h.stream, h.image) == 0 {
            return Err(fail(&errors, "cannot decode JPEG 2000"));
        }
        if opj::opj_end_decompress(h.codec, h.stream) == 0 {
            return Err(fail(&errors, "cannot decode JPEG 2000"));
        }
        let img = &*h.image;
        let mut comps = Vec::with_capacity(img.numcomps as usize);
        for c in 0..img.numcomps as usize {
            let cp = &*img.comps.add(c);
            if cp.w as usize != width || cp.h as usize != height || cp.data.is_null() {
                bail!("component {c} decodes to {}x{}, not {width}x{height}", cp.w, cp.h);
            }
            let data = std::slice::from_raw_parts(cp.data, width * height).to_vec();
            comps.push(Component { data, prec: cp.prec, signed: cp.sgnd != 0 });
        }
        Ok(Image { comps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_cut_headers_are_errors() {
        assert!(decode(b"", 4, 4, 1).is_err());
        assert!(decode(b"\xFF\x4F\xFF\x51", 4, 4, 1).is_err());
        assert!(decode(b"\xFF\x4F\xFF\x51\x00\x29\x00\x00", 4, 4, 1).is_err());
        let e = decode(b"not jpeg 2000 at all", 4, 4, 1).err().unwrap().to_string();
        assert!(e.contains("not a JPEG 2000"), "{e}");
    }
}
