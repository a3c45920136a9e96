//! A JPEG-LS decoder (ITU-T T.87 / ISO 14495-1): LOCO-I context modelling, adaptive Golomb
//! coding and run mode; lossless and near-lossless; 2 to 16 bits; one component, or several
//! with interleave none (one scan per component), line or sample. Follows CharLS (the decoder
//! behind pydicom's pyjpegls and pylibjpeg-libjpeg) where T.87 leaves room: contexts are shared
//! by the components of an interleaved scan, the run index is kept per component in line
//! interleave, and a sample-interleaved run interruption codes every component with the first
//! run-interruption context.
//!
//! Hostile input: every read is bounds checked, the image size is checked against what the
//! caller expects before anything is allocated, a codestream that ends early or holds an
//! impossible code is an error; nothing panics. Not read: mapping tables (palettes), point
//! transforms, and sizes from LSE extensions.

use anyhow::{bail, Result};

/// A decoded image: samples interleaved by pixel, and the codestream's precision.
pub(crate) struct Image {
    pub precision: u32,
    pub samples: Vec<u16>,
}

const J: [u32; 32] =
    [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The coding parameters of a scan (T.87 C.2.4.1 and A.2).
#[derive(Clone, Copy)]
struct Params {
    maxval: i32,
    near: i32,
    t1: i32,
    t2: i32,
    t3: i32,
    reset: i32,
    range: i32,
    qbpp: i32,
    limit: i32,
}

fn ceil_log2(x: i64) -> i32 {
    let mut n = 0;
    while (1i64 << n) < x {
        n += 1;
    }
    n
}

impl Params {
    /// From the precision, NEAR and the preset values of an LSE segment (0: default).
    fn new(precision: u32, near: i32, preset: [i32; 5]) -> Result<Params> {
        let maxval = if preset[0] > 0 { preset[0] } else { (1i32 << precision) - 1 };
        if !(1..=65535).contains(&maxval) {
            bail!("MAXVAL {maxval} is out of range");
        }
        if near < 0 || near > (maxval / 2).min(255) {
            bail!("NEAR {near} is out of range");
        }
        let clamp = |i: i32, j: i32| if i > maxval || i < j { j } else { i };
        let (t1, t2, t3) = if maxval >= 128 {
            // FACTOR * (BASIC_Tn - k) + k + ... with BASIC_T1..3 = 3, 7, 21.
            let f = (maxval.min(4095) + 128) / 256;
            let t1 = clamp(f + 2 + 3 * near, near + 1);
            let t2 = clamp(f * 4 + 3 + 5 * near, t1);
            (t1, t2, clamp(f * 17 + 4 + 7 * near, t2))
        } else {
            let f = 256 / (maxval + 1);
            let t1 = clamp((3 / f + 3 * near).max(2), near + 1);
            let t2 = clamp((7 / f + 5 * near).max(3), t1);
            (t1, t2, clamp((21 / f + 7 * near).max(4), t2))
        };
        let t1 = if preset[1] > 0 { preset[1] } else { t1 };
        let t2 = if preset[2] > 0 { preset[2] } else { t2 };
        let t3 = if preset[3] > 0 { preset[3] } else { t3 };
        let reset = if preset[4] > 0 { preset[4] } else { 64 };
        if !(t1 <= t2 && t2 <= t3 && t1 > near && t3 <= maxval.max(1)) || reset < 3 {
            bail!("bad preset coding parameters (T1 {t1}, T2 {t2}, T3 {t3}, RESET {reset})");
        }
        let range = (maxval + 2 * near) / (2 * near + 1) + 1;
        let bpp = ceil_log2(maxval as i64 + 1).max(2);
        Ok(Params {
            maxval,
            near,
            t1,
            t2,
            t3,
            reset,
            range,
            qbpp: ceil_log2(range as i64),
            limit: 2 * (bpp + bpp.max(8)),
        })
    }

    fn quantize(&self, d: i32) -> i32 {
        if d <= -self.t3 {
            -4
        } else if d <= -self.t2 {
            -3
        } else if d <= -self.t1 {
            -2
        } else if d < -self.near {
            -1
        } else if d <= self.near {
            0
        } else if d < self.t1 {
            1
        } else if d < self.t2 {
            2
        } else if d < self.t3 {
            3
        } else {
            4
        }
    }

    fn context(&self, ra: i32, rb: i32, rc: i32, rd: i32) -> i32 {
        (self.quantize(rd - rb) * 9 + self.quantize(rb - rc)) * 9 + self.quantize(rc - ra)
    }

    fn clamp(&self, v: i32) -> i32 {
        v.clamp(0, self.maxval)
    }

    fn reconstruct(&self, px: i32, err: i32) -> i32 {
        let m = 2 * self.near + 1;
        let mut v = px + err * m;
        if v < -self.near {
            v += self.range * m;
        } else if v > self.maxval + self.near {
            v -= self.range * m;
        }
        self.clamp(v)
    }
}

/// Bits of one entropy-coded segment, with JPEG-LS's bit stuffing (after 0xFF, a byte holds 7
/// bits); a marker (0xFF then a byte with its top bit set) or the end gives zero bits, counted.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    prev_ff: bool,
    past_end: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0, acc: 0, n: 0, prev_ff: false, past_end: 0 }
    }

    fn fill(&mut self) {
        while self.n <= 56 {
            let b = self.data.get(self.pos).copied();
            match b {
                Some(b) if self.prev_ff && b >= 0x80 => {
                    self.n += 8;
                    self.past_end += 8;
                }
                Some(b) if self.prev_ff => {
                    self.acc |= (b as u64) << (57 - self.n);
                    self.n += 7;
                    self.pos += 1;
                    self.prev_ff = false;
                }
                Some(b) => {
                    self.acc |= (b as u64) << (56 - self.n);
                    self.n += 8;
                    self.pos += 1;
                    self.prev_ff = b == 0xFF;
                }
                None => {
                    self.n += 8;
                    self.past_end += 8;
                }
            }
        }
    }

    fn check(&self) -> Result<()> {
        // A few zero bits past the end are read ahead by any decoder; a stream that needs
        // many more is cut.
        if self.past_end > 64 + 64 {
            bail!("JPEG-LS scan data ends early");
        }
        Ok(())
    }

    fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        if self.n < k {
            self.fill();
        }
        let v = (self.acc >> (64 - k)) as u32;
        self.acc <<= k;
        self.n -= k;
        v
    }

    fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    /// Zero bits before the next 1 (at most `max` + 1 looked at).
    fn unary(&mut self, max: i32) -> Result<i32> {
        let mut z = 0;
        loop {
            if self.n == 0 {
                self.fill();
                self.check()?;
            }
            if self.bit() {
                return Ok(z);
            }
            z += 1;
            if z > max {
                bail!("bad Golomb code in JPEG-LS scan data");
            }
        }
    }

    /// A limited-length Golomb code (T.87 A.5.3).
    fn golomb(&mut self, k: u32, limit: i32, qbpp: i32) -> Result<i32> {
        let high = self.unary(limit)?;
        if high >= limit - (qbpp + 1) {
            return Ok(self.bits(qbpp as u32) as i32 + 1);
        }
        if k == 0 {
            return Ok(high);
        }
        if k >= 31 || high >= (1 << (31 - k)) {
            bail!("bad Golomb code in JPEG-LS scan data");
        }
        Ok((high << k) + self.bits(k) as i32)
    }
}

/// A regular-mode context. The accumulators are i64: with RESET up to 65535 (LSE) and errors
/// up to 2^21, a hostile stream could overflow i32 before a reset halves them.
#[derive(Clone, Copy)]
struct Ctx {
    a: i64,
    b: i64,
    c: i32,
    n: i64,
}

#[derive(Clone, Copy)]
struct RunCtx {
    ri_type: i32,
    a: i64,
    n: i64,
    nn: i64,
}

/// The adaptive state of a scan: regular contexts, the two run-interruption contexts, and the
/// run index of each component.
struct State {
    p: Params,
    ctx: Vec<Ctx>,
    run: [RunCtx; 2],
    run_index: Vec<usize>,
}

impl State {
    fn new(p: Params, comps: usize) -> Self {
        let a = ((p.range + 32) / 64).max(2) as i64;
        State {
            p,
            ctx: vec![Ctx { a, b: 0, c: 0, n: 1 }; 365],
            run: [RunCtx { ri_type: 0, a, n: 1, nn: 0 }, RunCtx { ri_type: 1, a, n: 1, nn: 0 }],
            run_index: vec![0; comps],
        }
    }

    /// One sample in regular mode (T.87 A.4 to A.6).
    fn regular(&mut self, bits: &mut Bits, qs: i32, pred: i32) -> Result<i32> {
        let p = self.p;
        let sign = if qs < 0 { -1 } else { 1 };
        let cx = &mut self.ctx[qs.unsigned_abs() as usize];
        let px = p.clamp(pred + sign * cx.c);
        let mut k = 0u32;
        while (cx.n << k) < cx.a {
            k += 1;
            if k >= 16 {
                bail!("bad context state in JPEG-LS scan data");
            }
        }
        let m = bits.golomb(k, p.limit, p.qbpp)?;
        let mut err = if m & 1 == 0 { m / 2 } else { -(m + 1) / 2 };
        if k == 0 && p.near == 0 && 2 * cx.b + cx.n - 1 < 0 {
            err = -err - 1;
        }
        cx.a += err.abs() as i64;
        cx.b += err as i64 * (2 * p.near as i64 + 1);
        if cx.n == p.reset as i64 {
            cx.a >>= 1;
            cx.b >>= 1;
            cx.n >>= 1;
        }
        cx.n += 1;
        if cx.b + cx.n <= 0 {
            cx.b += cx.n;
            if cx.b <= -cx.n {
                cx.b = -cx.n + 1;
            }
            if cx.c > -128 {
                cx.c -= 1;
            }
        } else if cx.b > 0 {
            cx.b -= cx.n;
            if cx.b > 0 {
                cx.b = 0;
            }
            if cx.c < 127 {
                cx.c += 1;
            }
        }
        Ok(p.reconstruct(px, sign * err))
    }

    /// The length of a run of `left` samples at most (T.87 A.7.1, decoding).
    fn run_length(&mut self, bits: &mut Bits, comp: usize, left: usize) -> Result<usize> {
        let mut i = 0usize;
        let ri = &mut self.run_index[comp];
        while bits.bit() {
            let count = (1usize << J[*ri]).min(left - i);
            i += count;
            if count == 1 << J[*ri] {
                *ri = (*ri + 1).min(31);
            }
            if i == left {
                break;
            }
        }
        bits.check()?;
        if i != left {
            i += bits.bits(J[*ri]) as usize;
        }
        if i > left {
            bail!("a JPEG-LS run is longer than its line");
        }
        Ok(i)
    }

    /// The error of a run-interruption sample (T.87 A.7.2).
    fn interruption(&mut self, bits: &mut Bits, comp: usize, which: usize) -> Result<i32> {
        let p = self.p;
        let jv = J[self.run_index[comp]] as i32;
        let cx = &mut self.run[which];
        let temp = cx.a + (cx.n >> 1) * cx.ri_type as i64;
        let (mut nt, mut k) = (cx.n, 0u32);
        while nt < temp {
            nt <<= 1;
            k += 1;
            if k > 30 {
                bail!("bad run context state in JPEG-LS scan data");
            }
        }
        let em = bits.golomb(k, p.limit - jv - 1, p.qbpp)?;
        let t = em + cx.ri_type;
        let map = t & 1 == 1;
        let abs = (t + map as i32) / 2;
        let err = if (k != 0 || 2 * cx.nn >= cx.n) == map { -abs } else { abs };
        if err < 0 {
            cx.nn += 1;
        }
        cx.a += ((em + 1 - cx.ri_type) >> 1) as i64;
        if cx.n == p.reset as i64 {
            cx.a >>= 1;
            cx.n >>= 1;
            cx.nn >>= 1;
        }
        cx.n += 1;
        Ok(err)
    }
}

fn med(ra: i32, rb: i32, rc: i32) -> i32 {
    if rc >= ra.max(rb) {
        ra.min(rb)
    } else if rc <= ra.min(rb) {
        ra.max(rb)
    } else {
        ra + rb - rc
    }
}

/// Lines of one component with the edge samples T.87 asks for: `prev[0]` is Rc of the first
/// sample, `prev[w + 1]` Rd of the last.
struct Lines {
    prev: Vec<i32>,
    cur: Vec<i32>,
}

impl Lines {
    fn new(w: usize) -> Self {
        Lines { prev: vec![0; w + 2], cur: vec![0; w + 2] }
    }
    fn start(&mut self, w: usize) {
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.prev[w + 1] = self.prev[w];
        self.cur[0] = self.prev[1];
    }
}

/// One line of one component (interleave none or line).
fn decode_line(st: &mut State, bits: &mut Bits, comp: usize, l: &mut Lines, w: usize) -> Result<()> {
    let p = st.p;
    let mut x = 1;
    while x <= w {
        let (ra, rb, rc, rd) = (l.cur[x - 1], l.prev[x], l.prev[x - 1], l.prev[x + 1]);
        let qs = p.context(ra, rb, rc, rd);
        if qs != 0 {
            l.cur[x] = st.regular(bits, qs, med(ra, rb, rc))?;
            x += 1;
            continue;
        }
        let n = st.run_length(bits, comp, w + 1 - x)?;
        for v in &mut l.cur[x..x + n] {
            *v = ra;
        }
        x += n;
        if x > w {
            break;
        }
        let rb = l.prev[x];
        l.cur[x] = if (ra - rb).abs() <= p.near {
            let e = st.interruption(bits, comp, 1)?;
            p.reconstruct(ra, e)
        } else {
            let e = st.interruption(bits, comp, 0)?;
            p.reconstruct(rb, e * if rb - ra < 0 { -1 } else { 1 })
        };
        st.run_index[comp] = st.run_index[comp].saturating_sub(1);
        x += 1;
    }
    Ok(())
}

/// One line of all components, sample interleaved.
fn decode_line_sample(st: &mut State, bits: &mut Bits, l: &mut [Lines], w: usize) -> Result<()> {
    let p = st.p;
    let nc = l.len();
    let mut x = 1;
    let mut qs = vec![0i32; nc];
    while x <= w {
        for (c, lc) in l.iter().enumerate() {
            qs[c] = p.context(lc.cur[x - 1], lc.prev[x], lc.prev[x - 1], lc.prev[x + 1]);
        }
        if qs.iter().any(|&q| q != 0) {
            for (c, lc) in l.iter_mut().enumerate() {
                let pred = med(lc.cur[x - 1], lc.prev[x], lc.prev[x - 1]);
                lc.cur[x] = st.regular(bits, qs[c], pred)?;
            }
            x += 1;
            continue;
        }
        let n = st.run_length(bits, 0, w + 1 - x)?;
        for lc in l.iter_mut() {
            let ra = lc.cur[x - 1];
            for v in &mut lc.cur[x..x + n] {
                *v = ra;
            }
        }
        x += n;
        if x > w {
            break;
        }
        for lc in l.iter_mut() {
            let (ra, rb) = (lc.cur[x - 1], lc.prev[x]);
            let e = st.interruption(bits, 0, 0)?;
            lc.cur[x] = p.reconstruct(rb, e * if rb - ra < 0 { -1 } else { 1 });
        }
        st.run_index[0] = st.run_index[0].saturating_sub(1);
        x += 1;
    }
    Ok(())
}

/// The entropy-coded segments of a scan starting at `at`: split at restart markers, up to the
/// next other marker. Returns the segments and the position of that marker.
fn scan_segments(data: &[u8], at: usize) -> (Vec<&[u8]>, usize) {
    let mut segs = Vec::new();
    let (mut start, mut i) = (at, at);
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] >= 0x80 {
            segs.push(&data[start..i]);
            if (0xD0..=0xD7).contains(&data[i + 1]) {
                i += 2;
                start = i;
                continue;
            }
            return (segs, i);
        }
        i += 1;
    }
    segs.push(&data[start..]);
    (segs, data.len())
}

fn be16(d: &[u8], i: usize) -> Result<usize> {
    match d.get(i..i + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]]) as usize),
        None => bail!("JPEG-LS header is cut"),
    }
}

/// Decodes a JPEG-LS codestream that must hold a `width` x `height` image of `comps` components.
pub(crate) fn decode(data: &[u8], width: usize, height: usize, comps: usize) -> Result<Image> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        bail!("not a JPEG-LS codestream (no SOI marker)");
    }
    let mut i = 2;
    let mut frame: Option<(u32, Vec<u8>)> = None; // precision, component ids
    let mut preset = [0i32; 5];
    let mut restart = 0usize;
    let mut out: Vec<u16> = Vec::new();
    let mut done = vec![false; comps];
    loop {
        // Fill bytes before a marker are allowed.
        while data.get(i) == Some(&0xFF) && data.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if data.get(i) != Some(&0xFF) {
            bail!("JPEG-LS: expected a marker at byte {i}");
        }
        let Some(&m) = data.get(i + 1) else { bail!("JPEG-LS codestream ends early") };
        i += 2;
        if m == 0xD9 {
            break;
        }
        let len = be16(data, i)?;
        if len < 2 || i + len > data.len() {
            bail!("JPEG-LS marker segment FF{m:02X} is cut");
        }
        let seg = &data[i + 2..i + len];
        i += len;
        match m {
            0xF7 => {
                if seg.len() < 6 {
                    bail!("JPEG-LS frame header is cut");
                }
                let prec = seg[0] as u32;
                let (h, w, nf) = (be16(seg, 1)?, be16(seg, 3)?, seg[5] as usize);
                if !(2..=16).contains(&prec) {
                    bail!("JPEG-LS precision {prec} is not 2 to 16 bits");
                }
                if w != width || h != height || nf != comps {
                    bail!(
                        "codestream is {w}x{h} with {nf} components, the data set says {width}x{height} with {comps}"
                    );
                }
                if seg.len() < 6 + 3 * nf {
                    bail!("JPEG-LS frame header is cut");
                }
                for c in 0..nf {
                    if seg[6 + 3 * c + 1] != 0x11 {
                        bail!("JPEG-LS component {c} is subsampled, which is not read");
                    }
                }
                out = vec![0u16; width * height * comps];
                frame = Some((prec, (0..nf).map(|c| seg[6 + 3 * c]).collect()));
            }
            0xF8 => match seg.first() {
                Some(1) if seg.len() >= 11 => {
                    for (k, v) in preset.iter_mut().enumerate() {
                        *v = be16(seg, 1 + 2 * k)? as i32;
                    }
                }
                Some(id) => bail!("JPEG-LS preset parameters of type {id} (mapping tables, sizes) are not read"),
                None => bail!("JPEG-LS preset parameters are cut"),
            },
            0xDD => restart = be16(seg, 0)?,
            0xDA => {
                let Some((prec, ids)) = &frame else { bail!("JPEG-LS scan before the frame header") };
                let ns = *seg.first().unwrap_or(&0) as usize;
                if ns == 0 || seg.len() < 1 + 2 * ns + 3 {
                    bail!("JPEG-LS scan header is cut");
                }
                let mut cs = Vec::with_capacity(ns);
                for k in 0..ns {
                    let id = seg[1 + 2 * k];
                    let Some(c) = ids.iter().position(|&x| x == id) else {
                        bail!("JPEG-LS scan names component {id}, which the frame lacks")
                    };
                    if seg[2 + 2 * k] != 0 {
                        bail!("JPEG-LS mapping tables are not read");
                    }
                    if done[c] || cs.contains(&c) {
                        bail!("JPEG-LS component {id} is coded twice");
                    }
                    cs.push(c);
                }
                let (near, ilv, pt) = (seg[1 + 2 * ns] as i32, seg[2 + 2 * ns], seg[3 + 2 * ns] & 0x0F);
                if pt != 0 {
                    bail!("JPEG-LS point transform is not read");
                }
                if ilv > 2 || (ilv == 0 && ns != 1) {
                    bail!("JPEG-LS interleave mode {ilv} with {ns} components");
                }
                let p = Params::new(*prec, near, preset)?;
                let (segs, next) = scan_segments(data, i);
                let rows_per = if restart == 0 { height } else { restart };
                if segs.len() < height.div_ceil(rows_per) {
                    bail!("JPEG-LS scan has {} restart intervals, {} needed", segs.len(), height.div_ceil(rows_per));
                }
                let mut lines: Vec<Lines> = cs.iter().map(|_| Lines::new(width)).collect();
                let mut st = State::new(p, ns);
                let mut bits = Bits::new(segs[0]);
                for y in 0..height {
                    if y > 0 && y % rows_per == 0 {
                        st = State::new(p, ns);
                        bits = Bits::new(segs[y / rows_per]);
                        lines = cs.iter().map(|_| Lines::new(width)).collect();
                    }
                    for l in lines.iter_mut() {
                        l.start(width);
                    }
                    if ilv == 2 && ns > 1 {
                        decode_line_sample(&mut st, &mut bits, &mut lines, width)?;
                    } else {
                        for (k, l) in lines.iter_mut().enumerate() {
                            decode_line(&mut st, &mut bits, k, l, width)?;
                        }
                    }
                    bits.check()?;
                    for (k, &c) in cs.iter().enumerate() {
                        let row = &mut out[(y * width) * comps..(y + 1) * width * comps];
                        for (x, &v) in lines[k].cur[1..=width].iter().enumerate() {
                            row[x * comps + c] = v as u16;
                        }
                    }
                }
                for &c in &cs {
                    done[c] = true;
                }
                i = next;
            }
            0xE0..=0xEF | 0xFE => {}
            m => bail!("JPEG-LS: unexpected marker FF{m:02X}"),
        }
    }
    let Some((precision, _)) = frame else { bail!("JPEG-LS codestream has no frame header") };
    if done.iter().any(|d| !d) {
        bail!("JPEG-LS codestream lacks the scan of a component");
    }
    Ok(Image { precision, samples: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_match_t87() {
        // T.87 Table C.3: 8-bit lossless 3, 7, 21; 16-bit lossless 18, 67, 276.
        let p = Params::new(8, 0, [0; 5]).unwrap();
        assert_eq!((p.t1, p.t2, p.t3, p.range, p.qbpp, p.limit), (3, 7, 21, 256, 8, 32));
        let p = Params::new(16, 0, [0; 5]).unwrap();
        assert_eq!((p.t1, p.t2, p.t3, p.limit), (18, 67, 276, 64));
    }

    #[test]
    fn garbage_is_an_error() {
        for bytes in [&b""[..], b"\xFF\xD8", b"\xFF\xD8\xFF\xF7\x00\x0B\x08\x00\x04\x00\x04\x01\x01\x11\x00", b"xyz"] {
            assert!(decode(bytes, 4, 4, 1).is_err());
        }
    }
}
