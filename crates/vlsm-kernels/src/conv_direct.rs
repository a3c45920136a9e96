//! Direct same-padded convolution on a zero-padded copy of the image, no im2col.
//!
//! Each image is copied once into a grid with a `k/2` border ("padded grid", row length
//! `wp = w + k − 1`). On that grid tap `t = (c, ky, kx)` of output position `pos = y·wp + x`
//! reads `xp[off[t] + pos]` with `off[t] = c·hp·wp + ky·wp + kx`, so for every tap the inputs of
//! consecutive positions are consecutive floats: the kernels load them straight from the padded
//! image. Positions with x ≥ w are computed and thrown away (2 of 162 columns at 160 px).
//! im2col instead writes and re-reads k² copies of the image per pass, which cost as much as
//! the arithmetic here.
//!
//! - `forward`: out[o, pos] = Σ_t W[o, t] · xp[off[t] + pos]   (6 channels × 16 positions a tile)
//! - `weight_grad`: gW[o, t] += Σ_pos g[o, pos] · xp[off[t] + pos]   (4 channels × 3 taps a tile)
//!
//! The input gradient is `forward` of the padded output gradient with the flipped kernel.

use rayon::prelude::*;

use crate::parallel::SendPtr;
use crate::simd;

/// Output channels per forward tile.
const MO: usize = 6;
/// Positions per forward tile (two AVX vectors).
const NP: usize = 16;
/// Output channels and taps per weight-gradient tile.
const GO: usize = 4;
const GT: usize = 3;
/// Positions per weight-gradient pass: the channels' slices stay in L1 across the taps.
const CHUNK: usize = 1024;

/// The padded grid of an h x w image for a k x k kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub h: usize,
    pub w: usize,
    pub k: usize,
    /// Row length and row count of the padded image.
    wp: usize,
    hp: usize,
    /// Output positions computed (h·wp rounded up to whole tiles).
    npos: usize,
}

impl Grid {
    pub(crate) fn new(h: usize, w: usize, k: usize) -> Self {
        let (wp, hp) = (w + k - 1, h + k - 1);
        Self { h, w, k, wp, hp, npos: (h * wp).div_ceil(NP) * NP }
    }

    /// Floats one padded channel takes, with slack for the last tile's reads past the end.
    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// Floats a padded image of `c` channels takes.
    pub(crate) fn padded_len(&self, c: usize) -> usize {
        c * self.plane() + self.npos + NP
    }

    /// Copies `x` [c, h, w] into `xp` (`padded_len(c)` floats) with a zero border.
    pub(crate) fn pad(&self, x: &[f32], c: usize, xp: &mut [f32]) {
        let (p, plane, (h, w, wp)) = (self.k / 2, self.plane(), (self.h, self.w, self.wp));
        let xp = &mut xp[..self.padded_len(c)];
        // Only the border and the slack are zeroed; the interior is overwritten.
        let (planes, slack) = xp.split_at_mut(c * plane);
        slack.fill(0.0);
        for (ci, dst) in planes.chunks_exact_mut(plane).enumerate() {
            dst[..p * wp + p].fill(0.0);
            for y in 0..h {
                let row = &mut dst[(y + p) * wp + p..];
                row[..w].copy_from_slice(&x[(ci * h + y) * w..][..w]);
                // The right border of this row and the left border of the next one.
                row[w..wp].fill(0.0);
            }
            dst[(h + p) * wp + p..].fill(0.0);
        }
    }

    /// Tap offsets for `c` input channels.
    fn offsets(&self, c: usize) -> Taps {
        let mut off = Vec::with_capacity(c * self.k * self.k);
        for ci in 0..c {
            for ky in 0..self.k {
                for kx in 0..self.k {
                    off.push(ci * self.plane() + ky * self.wp + kx);
                }
            }
        }
        Taps::new(off)
    }

    /// Copies `g` [co, h, w] onto the output grid (`co` rounded up to `GO` rows of `npos`), zeros
    /// at the discarded positions, so every position can be summed over.
    pub(crate) fn grid_of(&self, g: &[f32], co: usize, out: &mut Vec<f32>) {
        let (h, w, wp, npos) = (self.h, self.w, self.wp, self.npos);
        let rows = co.div_ceil(GO) * GO;
        if out.len() < rows * npos {
            out.resize(rows * npos, 0.0);
        }
        for (o, dst) in out[..rows * npos].chunks_exact_mut(npos).enumerate() {
            if o >= co {
                dst.fill(0.0);
                continue;
            }
            for y in 0..h {
                let row = &mut dst[y * wp..(y + 1) * wp];
                row[..w].copy_from_slice(&g[(o * h + y) * w..][..w]);
                row[w..].fill(0.0);
            }
            dst[h * wp..].fill(0.0);
        }
    }
}

/// Weights [co, t] packed for `forward`: panels of `MO` channels, `[panel][t][MO]`, zero-padded.
pub(crate) fn pack_weights(wt: &[f32], co: usize, taps: usize) -> Vec<f32> {
    let panels = co.div_ceil(MO);
    let mut p = vec![0f32; panels * taps * MO];
    for o in 0..co {
        for t in 0..taps {
            p[((o / MO) * taps + t) * MO + o % MO] = wt[o * taps + t];
        }
    }
    p
}

/// Tap offsets into a padded image and the largest of them, the bound the tile kernels check
/// their reads against.
struct Taps {
    off: Vec<usize>,
    max: usize,
}

impl Taps {
    fn new(off: Vec<usize>) -> Self {
        let max = off.iter().copied().max().unwrap_or(0);
        Self { off, max }
    }

    fn len(&self) -> usize {
        self.off.len()
    }
}

/// `out[o, y, x] = Σ_t W[o, t] · xp[off[t] + y·wp + x]` for `co` channels (`wpk` from
/// `pack_weights`), written to `out` [co, h, w]. `scratch` holds the grid output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    grid: &Grid,
    xp: &[f32],
    c: usize,
    wpk: &[f32],
    co: usize,
    out: &mut [f32],
    par: bool,
    scratch: &mut Vec<f32>,
) {
    let taps = grid.offsets(c);
    let nt = taps.len();
    let panels = co.div_ceil(MO);
    let npos = grid.npos;
    assert!(xp.len() >= grid.padded_len(c) && wpk.len() >= panels * nt * MO && out.len() >= co * grid.h * grid.w);
    if scratch.len() < panels * MO * npos {
        scratch.resize(panels * MO * npos, 0.0);
    }
    let avx = simd::avx2_fma();
    let dst = SendPtr::new(scratch.as_mut_ptr());
    // Tile (pi, p0) is rows pi·MO.. (MO of them) and columns p0..p0 + NP of `scratch`.
    let tile = |pi: usize, p0: usize| {
        let (xs, wp) = (&xp[p0..], &wpk[pi * nt * MO..][..nt * MO]);
        // SAFETY: pi < panels and p0 + NP <= npos (npos is a multiple of NP), so the tile's MO
        // rows of NP floats, npos apart from row pi·MO, column p0, lie inside `scratch`
        // (panels·MO rows of npos), which outlives both loops below. Each (pi, p0) is visited
        // once, so no other task touches them. `avx` is true only on a CPU with AVX2 and FMA.
        unsafe {
            let d = dst.get().add(pi * MO * npos + p0);
            if avx {
                #[cfg(target_arch = "x86_64")]
                {
                    if grid.k == 3 {
                        x86::fwd_tile3(c, grid.plane(), grid.wp, xs, wp, d, npos);
                    } else {
                        x86::fwd_tile(&taps, xs, wp, d, npos);
                    }
                    return;
                }
            }
            fwd_tile_generic(&taps, xs, wp, d, npos);
        }
    };
    // Small weights (the shallow levels, where the image is large): all channel panels per
    // position tile, so each input line is fetched once for all of them. Large weights: one
    // panel over all positions, so the panel's weights stay in cache.
    let pos_outer = panels * nt * MO * 4 <= 128 << 10;
    if pos_outer {
        let run = |p0: usize| (0..panels).for_each(|pi| tile(pi, p0));
        if par {
            (0..npos).into_par_iter().step_by(NP).for_each(run);
        } else {
            (0..npos).step_by(NP).for_each(run);
        }
    } else {
        let run = |pi: usize| (0..npos).step_by(NP).for_each(|p0| tile(pi, p0));
        if par {
            (0..panels).into_par_iter().for_each(run);
        } else {
            (0..panels).for_each(run);
        }
    }
    let (h, w, wpd) = (grid.h, grid.w, grid.wp);
    for o in 0..co {
        for y in 0..h {
            out[(o * h + y) * w..][..w].copy_from_slice(&scratch[o * npos + y * wpd..][..w]);
        }
    }
}

/// `gw[o, t] += Σ_pos gg[o, pos] · xp[off[t] + pos]`: `gg` from `Grid::grid_of`, gw [co, c·k²].
pub(crate) fn weight_grad(grid: &Grid, xp: &[f32], c: usize, gg: &[f32], co: usize, gw: &mut [f32]) {
    let off = grid.offsets(c).off;
    let taps = off.len();
    let npos = grid.npos;
    assert!(xp.len() >= grid.padded_len(c) && gg.len() >= co.div_ceil(GO) * GO * npos && gw.len() >= co * taps);
    let avx = simd::avx2_fma();
    for c0 in (0..npos).step_by(CHUNK) {
        let len = CHUNK.min(npos - c0);
        for o0 in (0..co).step_by(GO) {
            for t0 in (0..taps).step_by(GT) {
                let mut sums = [[0f32; GT]; GO];
                // Short last tap group: repeat tap t0 (its sums are dropped).
                let tt: [usize; GT] = std::array::from_fn(|j| off[if t0 + j < taps { t0 + j } else { t0 }] + c0);
                let g = &gg[o0 * npos + c0..];
                if avx {
                    #[cfg(target_arch = "x86_64")]
                    {
                        // SAFETY: the CPU supports AVX2 and FMA (`avx`).
                        unsafe { x86::gw_tile(len, g, npos, xp, tt, &mut sums) };
                    }
                } else {
                    gw_tile_generic(len, g, npos, xp, tt, &mut sums);
                }
                for (r, row) in sums.iter().enumerate().take(co - o0) {
                    for (j, &s) in row.iter().enumerate().take(taps - t0) {
                        gw[(o0 + r) * taps + t0 + j] += s;
                    }
                }
            }
        }
    }
}

/// One forward tile, `MO` channels × `NP` positions: `dst[r·ld + p] = Σ_t wp[t·MO + r] ·
/// xp[off[t] + p]`. It writes through a raw pointer because the tiles of different tasks
/// interleave in `dst`'s rows, so no task may hold a slice over another's.
///
/// # Safety
/// `dst` must be valid for writes of `NP` floats at `dst + r·ld` for every `r < MO`, and no
/// other thread may access those floats during the call.
unsafe fn fwd_tile_generic(taps: &Taps, xp: &[f32], wp: &[f32], dst: *mut f32, ld: usize) {
    let mut acc = [[0f32; NP]; MO];
    for (t, &o) in taps.off.iter().enumerate() {
        let xs = &xp[o..o + NP];
        for (r, row) in acc.iter_mut().enumerate() {
            let a = wp[t * MO + r];
            row.iter_mut().zip(xs).for_each(|(s, &v)| *s += a * v);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees NP writable floats at dst + r·ld that nobody else uses;
        // `row` is a local array, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst.add(r * ld), NP) };
    }
}

fn gw_tile_generic(len: usize, g: &[f32], ld: usize, xp: &[f32], tt: [usize; GT], sums: &mut [[f32; GT]; GO]) {
    for (r, row) in sums.iter_mut().enumerate() {
        let gr = &g[r * ld..r * ld + len];
        for (s, &o) in row.iter_mut().zip(&tt) {
            *s = gr.iter().zip(&xp[o..o + len]).map(|(a, b)| a * b).sum();
        }
    }
}

/// The AVX2 + FMA tiles. Their inputs are slices whose bounds are checked once per tile; the
/// vector loads inside then go through raw pointers.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Taps, GO, GT, MO, NP};
    use std::arch::x86_64::*;

    /// One tap of a forward tile: 16 inputs at `$x` times the tap's `MO` weights at `$w`. A
    /// macro, not a function, so the accumulators stay in registers. The caller must have
    /// checked that `$x + 0..NP` and `$w + 0..MO` are readable.
    macro_rules! fwd_tap {
        ($acc:ident, $x:expr, $w:expr) => {{
            let (x, w): (*const f32, *const f32) = ($x, $w);
            // SAFETY: x + 0..16 is readable (checked by the kernel that expands this).
            let (x0, x1) = unsafe { (_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8))) };
            for (r, a) in $acc.iter_mut().enumerate() {
                // SAFETY: w + r with r < MO is readable (checked by the kernel that expands this).
                let b = unsafe { _mm256_broadcast_ss(&*w.add(r)) };
                a[0] = _mm256_fmadd_ps(b, x0, a[0]);
                a[1] = _mm256_fmadd_ps(b, x1, a[1]);
            }
        }};
    }

    /// Writes a forward tile's accumulators, rows `$ld` apart, to `$dst` (writable and
    /// unshared: the contract of the kernel that expands this).
    macro_rules! store_tile {
        ($acc:ident, $dst:expr, $ld:expr) => {{
            let (dst, ld): (*mut f32, usize) = ($dst, $ld);
            for (r, row) in $acc.iter().enumerate() {
                // SAFETY: dst + r·ld + 0..16 is writable and unshared (the kernel's contract).
                unsafe {
                    _mm256_storeu_ps(dst.add(r * ld), row[0]);
                    _mm256_storeu_ps(dst.add(r * ld + 8), row[1]);
                }
            }
        }};
    }

    /// [`fwd_tile_generic`](super::fwd_tile_generic) in registers: 12 accumulators (6 channels
    /// x 2 vectors) + 2 input vectors + 1 broadcast weight.
    ///
    /// # Safety
    /// As `fwd_tile_generic`: `dst` must be valid for writes of `NP` floats at `dst + r·ld` for
    /// every `r < MO`, and no other thread may access them during the call.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fwd_tile(taps: &Taps, xp: &[f32], wp: &[f32], dst: *mut f32, ld: usize) {
        assert!(taps.max + NP <= xp.len() && wp.len() >= taps.len() * MO);
        let mut acc = [[_mm256_setzero_ps(); 2]; MO];
        for (t, &o) in taps.off.iter().enumerate() {
            // SAFETY: o + NP <= taps.max + NP <= xp.len() and (t + 1)·MO <= wp.len() (asserted
            // above), so both pointers and the reads fwd_tap makes from them stay in the slices.
            let (x, w) = unsafe { (xp.as_ptr().add(o), wp.as_ptr().add(t * MO)) };
            fwd_tap!(acc, x, w);
        }
        store_tile!(acc, dst, ld);
    }

    /// [`fwd_tile`] for 3x3 kernels on `c` channels `plane` floats apart, rows `wpitch` apart:
    /// the nine taps of a channel at fixed offsets from its plane, so no offset table is read.
    ///
    /// # Safety
    /// As [`fwd_tile`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fwd_tile3(
        c: usize,
        plane: usize,
        wpitch: usize,
        xp: &[f32],
        wp: &[f32],
        dst: *mut f32,
        ld: usize,
    ) {
        assert!(c == 0 || ((c - 1) * plane + 2 * wpitch + 2 + NP <= xp.len() && wp.len() >= c * 9 * MO));
        let mut acc = [[_mm256_setzero_ps(); 2]; MO];
        let mut t = 0;
        for ci in 0..c {
            for ky in 0..3 {
                for kx in 0..3 {
                    let o = ci * plane + ky * wpitch + kx;
                    // SAFETY: o + NP <= (c − 1)·plane + 2·wpitch + 2 + NP <= xp.len() and
                    // (t + 1)·MO <= 9·c·MO <= wp.len() (asserted above), so both pointers and
                    // the reads fwd_tap makes from them stay in the slices.
                    let (x, w) = unsafe { (xp.as_ptr().add(o), wp.as_ptr().add(t * MO)) };
                    fwd_tap!(acc, x, w);
                    t += 1;
                }
            }
        }
        store_tile!(acc, dst, ld);
    }

    /// [`gw_tile_generic`](super::gw_tile_generic) in registers: 12 accumulators (4 channels x
    /// 3 taps, 8 positions each) + 4 gradient + 3 input loads per step, summed across lanes
    /// once at the end.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gw_tile(len: usize, g: &[f32], ld: usize, xp: &[f32], tt: [usize; GT], sums: &mut [[f32; GT]; GO]) {
        assert!(g.len() >= (GO - 1) * ld + len && tt.iter().all(|&t| t + len <= xp.len()));
        let (g, xp) = (g.as_ptr(), xp.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); GT]; GO];
        let mut p = 0;
        while p + 8 <= len {
            // SAFETY: tt[j] + p + 8 <= tt[j] + len <= xp.len() (asserted).
            let xs: [__m256; GT] = std::array::from_fn(|j| unsafe { _mm256_loadu_ps(xp.add(tt[j] + p)) });
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: r·ld + p + 8 <= (GO − 1)·ld + len <= g.len() (asserted).
                let gv = unsafe { _mm256_loadu_ps(g.add(r * ld + p)) };
                for j in 0..GT {
                    row[j] = _mm256_fmadd_ps(gv, xs[j], row[j]);
                }
            }
            p += 8;
        }
        for (r, row) in acc.iter().enumerate() {
            for j in 0..GT {
                let v = row[j];
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                let mut tail = 0f32;
                for q in p..len {
                    // SAFETY: q < len, so both reads are inside the asserted bounds.
                    tail += unsafe { *g.add(r * ld + q) * *xp.add(tt[j] + q) };
                }
                sums[r][j] = _mm_cvtss_f32(s) + tail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rnd(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Reference: the definition, in f64.
    fn conv_ref(x: &[f32], c: usize, h: usize, w: usize, wt: &[f32], co: usize, k: usize) -> Vec<f32> {
        let p = (k / 2) as isize;
        let mut out = vec![0f32; co * h * w];
        for o in 0..co {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = 0f64;
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (sy, sx) = (y as isize + ky as isize - p, xx as isize + kx as isize - p);
                                if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                                    s += wt[((o * c + ci) * k + ky) * k + kx] as f64
                                        * x[(ci * h + sy as usize) * w + sx as usize] as f64;
                                }
                            }
                        }
                    }
                    out[(o * h + y) * w + xx] = s as f32;
                }
            }
        }
        out
    }

    #[test]
    fn forward_and_weight_gradient_match_the_definition() {
        for (c, co, h, w, k) in
            [(1, 1, 1, 1, 3), (2, 7, 5, 9, 3), (3, 13, 17, 4, 3), (4, 6, 3, 3, 5), (5, 4, 40, 33, 3), (2, 3, 2, 1, 7)]
        {
            let x = rnd(c * h * w, 1 + c as u32);
            let wt = rnd(co * c * k * k, 7 + co as u32);
            let g = rnd(co * h * w, 3);
            let grid = Grid::new(h, w, k);
            let mut xp = vec![f32::NAN; grid.padded_len(c)];
            grid.pad(&x, c, &mut xp);
            let want = conv_ref(&x, c, h, w, &wt, co, k);
            let wpk = pack_weights(&wt, co, c * k * k);
            for par in [false, true] {
                let (mut out, mut scratch) = (vec![f32::NAN; co * h * w], Vec::new());
                forward(&grid, &xp, c, &wpk, co, &mut out, par, &mut scratch);
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() < 1e-4, "forward {c},{co},{h},{w},{k} [{i}]: {a} vs {b}");
                }
            }
            // gW[o, ci, ky, kx] = Σ g[o, y, x] · x[ci, y + ky − p, x + kx − p]
            let p = (k / 2) as isize;
            let mut gg = Vec::new();
            grid.grid_of(&g, co, &mut gg);
            let mut gw = vec![1f32; co * c * k * k];
            weight_grad(&grid, &xp, c, &gg, co, &mut gw);
            for o in 0..co {
                for ci in 0..c {
                    for t in 0..k * k {
                        let (ky, kx) = ((t / k) as isize, (t % k) as isize);
                        let mut s = 1f64;
                        for y in 0..h as isize {
                            for xx in 0..w as isize {
                                let (sy, sx) = (y + ky - p, xx + kx - p);
                                if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                                    s += g[(o * h + y as usize) * w + xx as usize] as f64
                                        * x[(ci * h + sy as usize) * w + sx as usize] as f64;
                                }
                            }
                        }
                        let got = gw[(o * c + ci) * k * k + t];
                        assert!(
                            (got as f64 - s).abs() < 1e-3,
                            "weight grad {c},{co},{h},{w},{k} [{o},{ci},{t}]: {got} vs {s}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn generic_tiles_agree_with_the_vector_ones() {
        if !simd::avx2_fma() {
            return;
        }
        let xp = rnd(4000, 5);
        let wp = rnd(40 * MO, 6);
        let off = Taps::new((0..40).map(|t| t * 37 % 2000).collect());
        let (mut a, mut b) = (vec![0f32; MO * 64], vec![0f32; MO * 64]);
        // SAFETY: the CPU has AVX2 and FMA (checked above); a and b hold MO rows of 64 ≥ NP.
        unsafe { x86::fwd_tile(&off, &xp, &wp, a.as_mut_ptr(), 64) };
        // SAFETY: as above.
        unsafe { fwd_tile_generic(&off, &xp, &wp, b.as_mut_ptr(), 64) };
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
        let g = rnd(GO * 300, 9);
        let tt = [0, 17, 1500];
        let (mut s1, mut s2) = ([[0f32; GT]; GO], [[0f32; GT]; GO]);
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { x86::gw_tile(299, &g, 300, &xp, tt, &mut s1) };
        gw_tile_generic(299, &g, 300, &xp, tt, &mut s2);
        for (r1, r2) in s1.iter().zip(&s2) {
            for (x, y) in r1.iter().zip(r2) {
                assert!((x - y).abs() < 1e-3, "{x} vs {y}");
            }
        }
    }
}
