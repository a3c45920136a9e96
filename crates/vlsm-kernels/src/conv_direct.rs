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
    fn offsets(&self, c: usize) -> Vec<usize> {
        let mut off = Vec::with_capacity(c * self.k * self.k);
        for ci in 0..c {
            for ky in 0..self.k {
                for kx in 0..self.k {
                    off.push(ci * self.plane() + ky * self.wp + kx);
                }
            }
        }
        off
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

/// `out[o, y, x] = Σ_t W[o, t] · xp[off[t] + y·wp + x]` for `co` channels (`wpk` from
/// `pack_weights`), written to `out` [co, h, w]. `scratch` holds the grid output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(grid: &Grid, xp: &[f32], c: usize, wpk: &[f32], co: usize, out: &mut [f32], par: bool, scratch: &mut Vec<f32>) {
    let off = grid.offsets(c);
    let taps = off.len();
    let panels = co.div_ceil(MO);
    let npos = grid.npos;
    assert!(xp.len() >= grid.padded_len(c) && wpk.len() >= panels * taps * MO && out.len() >= co * grid.h * grid.w);
    if scratch.len() < panels * MO * npos {
        scratch.resize(panels * MO * npos, 0.0);
    }
    let avx = has_avx2();
    let tile = |pi: usize, p0: usize, dst: *mut f32| {
        let wp = &wpk[pi * taps * MO..][..taps * MO];
        // SAFETY: off[t] + p0 + NP <= c·plane + npos + NP = padded_len (asserted); dst points
        // at row pi·MO, column p0 of `scratch` (MO rows of npos each).
        unsafe {
            if avx && grid.k == 3 {
                fwd_tile3_avx2(c, grid.plane(), grid.wp, xp.as_ptr().add(p0), wp.as_ptr(), dst, npos);
            } else if avx {
                fwd_tile_avx2(&off, xp.as_ptr().add(p0), wp.as_ptr(), dst, npos);
            } else {
                fwd_tile_generic(&off, &xp[p0..], wp, dst, npos);
            }
        }
    };
    // Small weights (the shallow levels, where the image is large): all channel panels per
    // position tile, so each input line is fetched once for all of them. Large weights: one
    // panel over all positions, so the panel's weights stay in cache.
    let pos_outer = panels * taps * MO * 4 <= 128 << 10;
    let dst = SendPtr(scratch.as_mut_ptr());
    let dst = &dst;
    if pos_outer {
        let run = |p0: usize| (0..panels).for_each(|pi| tile(pi, p0, unsafe { dst.0.add(pi * MO * npos + p0) }));
        if par {
            (0..npos).into_par_iter().step_by(NP).for_each(run);
        } else {
            (0..npos).step_by(NP).for_each(run);
        }
    } else {
        let run = |pi: usize| (0..npos).step_by(NP).for_each(|p0| tile(pi, p0, unsafe { dst.0.add(pi * MO * npos + p0) }));
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
    let off = grid.offsets(c);
    let taps = off.len();
    let npos = grid.npos;
    assert!(xp.len() >= grid.padded_len(c) && gg.len() >= co.div_ceil(GO) * GO * npos && gw.len() >= co * taps);
    let avx = has_avx2();
    for c0 in (0..npos).step_by(CHUNK) {
        let len = CHUNK.min(npos - c0);
        for o0 in (0..co).step_by(GO) {
            for t0 in (0..taps).step_by(GT) {
                let mut sums = [[0f32; GT]; GO];
                // Short last tap group: repeat tap t0 (its sums are dropped).
                let tt: [usize; GT] = std::array::from_fn(|j| off[if t0 + j < taps { t0 + j } else { t0 }] + c0);
                // SAFETY: off[t] + c0 + len <= c·plane + npos <= padded_len; gg has GO rows from o0.
                unsafe {
                    if avx {
                        gw_tile_avx2(len, gg.as_ptr().add(o0 * npos + c0), npos, xp.as_ptr(), tt, &mut sums);
                    } else {
                        gw_tile_generic(len, &gg[o0 * npos + c0..], npos, xp, tt, &mut sums);
                    }
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

struct SendPtr(*mut f32);
// SAFETY: the tiles written through it are disjoint.
unsafe impl Sync for SendPtr {}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Writes through a raw pointer: tiles of different tasks interleave in `dst`'s rows, so no
/// task may hold a slice over another's.
unsafe fn fwd_tile_generic(off: &[usize], xp: &[f32], wp: &[f32], dst: *mut f32, ld: usize) {
    let mut acc = [[0f32; NP]; MO];
    for (t, &o) in off.iter().enumerate() {
        let xs = &xp[o..o + NP];
        for (r, row) in acc.iter_mut().enumerate() {
            let a = wp[t * MO + r];
            row.iter_mut().zip(xs).for_each(|(s, &v)| *s += a * v);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        std::ptr::copy_nonoverlapping(row.as_ptr(), dst.add(r * ld), NP);
    }
}

/// One tap of a forward tile: 16 inputs from `$x` times the tap's `MO` weights at `$w`.
#[cfg(target_arch = "x86_64")]
macro_rules! fwd_tap {
    ($acc:ident, $x:expr, $w:expr) => {{
        let x = $x;
        let (x0, x1) = (_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8)));
        for (r, a) in $acc.iter_mut().enumerate() {
            let b = _mm256_broadcast_ss(&*$w.add(r));
            a[0] = _mm256_fmadd_ps(b, x0, a[0]);
            a[1] = _mm256_fmadd_ps(b, x1, a[1]);
        }
    }};
}

/// Writes a forward tile's accumulators, rows `$ld` apart.
#[cfg(target_arch = "x86_64")]
macro_rules! store_tile {
    ($acc:ident, $dst:expr, $ld:expr) => {
        for (r, row) in $acc.iter().enumerate() {
            _mm256_storeu_ps($dst.add(r * $ld), row[0]);
            _mm256_storeu_ps($dst.add(r * $ld + 8), row[1]);
        }
    };
}

/// 12 accumulators (6 channels x 2 vectors) + 2 input vectors + 1 broadcast weight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd_tile_avx2(off: &[usize], xp: *const f32, wp: *const f32, dst: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MO];
    let mut w = wp;
    for &o in off {
        fwd_tap!(acc, xp.add(o), w);
        w = w.add(MO);
    }
    store_tile!(acc, dst, ld);
}

/// `fwd_tile_avx2` for 3x3 kernels: the nine taps of a channel at fixed offsets from its
/// plane, so no offset table is read.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd_tile3_avx2(c: usize, plane: usize, wpitch: usize, xp: *const f32, wp: *const f32, dst: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MO];
    let mut w = wp;
    for ci in 0..c {
        let base = xp.add(ci * plane);
        for ky in 0..3 {
            let row = base.add(ky * wpitch);
            for kx in 0..3 {
                fwd_tap!(acc, row.add(kx), w);
                w = w.add(MO);
            }
        }
    }
    store_tile!(acc, dst, ld);
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn fwd_tile3_avx2(_: usize, _: usize, _: usize, _: *const f32, _: *const f32, _: *mut f32, _: usize) {
    unreachable!()
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn fwd_tile_avx2(_: &[usize], _: *const f32, _: *const f32, _: *mut f32, _: usize) {
    unreachable!()
}

fn gw_tile_generic(len: usize, g: &[f32], ld: usize, xp: &[f32], tt: [usize; GT], sums: &mut [[f32; GT]; GO]) {
    for (r, row) in sums.iter_mut().enumerate() {
        let gr = &g[r * ld..r * ld + len];
        for (s, &o) in row.iter_mut().zip(&tt) {
            *s = gr.iter().zip(&xp[o..o + len]).map(|(a, b)| a * b).sum();
        }
    }
}

/// 12 accumulators (4 channels x 3 taps, 8 positions each) + 4 gradient + 3 input loads per
/// step; summed across lanes once at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gw_tile_avx2(len: usize, g: *const f32, ld: usize, xp: *const f32, tt: [usize; GT], sums: &mut [[f32; GT]; GO]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); GT]; GO];
    let mut p = 0;
    while p + 8 <= len {
        let xs: [__m256; GT] = std::array::from_fn(|j| _mm256_loadu_ps(xp.add(tt[j] + p)));
        for (r, row) in acc.iter_mut().enumerate() {
            let gv = _mm256_loadu_ps(g.add(r * ld + p));
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
                tail += *g.add(r * ld + q) * *xp.add(tt[j] + q);
            }
            sums[r][j] = _mm_cvtss_f32(s) + tail;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn gw_tile_avx2(_: usize, _: *const f32, _: usize, _: *const f32, _: [usize; GT], _: &mut [[f32; GT]; GO]) {
    unreachable!()
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
                                    s += wt[((o * c + ci) * k + ky) * k + kx] as f64 * x[(ci * h + sy as usize) * w + sx as usize] as f64;
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
        for (c, co, h, w, k) in [(1, 1, 1, 1, 3), (2, 7, 5, 9, 3), (3, 13, 17, 4, 3), (4, 6, 3, 3, 5), (5, 4, 40, 33, 3), (2, 3, 2, 1, 7)] {
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
                                    s += g[(o * h + y as usize) * w + xx as usize] as f64 * x[(ci * h + sy as usize) * w + sx as usize] as f64;
                                }
                            }
                        }
                        let got = gw[(o * c + ci) * k * k + t];
                        assert!((got as f64 - s).abs() < 1e-3, "weight grad {c},{co},{h},{w},{k} [{o},{ci},{t}]: {got} vs {s}");
                    }
                }
            }
        }
    }

    #[test]
    fn generic_tiles_agree_with_the_vector_ones() {
        if !has_avx2() {
            return;
        }
        let xp = rnd(4000, 5);
        let wp = rnd(40 * MO, 6);
        let off: Vec<usize> = (0..40).map(|t| t * 37 % 2000).collect();
        let (mut a, mut b) = (vec![0f32; MO * 64], vec![0f32; MO * 64]);
        unsafe { fwd_tile_avx2(&off, xp.as_ptr(), wp.as_ptr(), a.as_mut_ptr(), 64) };
        unsafe { fwd_tile_generic(&off, &xp, &wp, b.as_mut_ptr(), 64) };
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
        let g = rnd(GO * 300, 9);
        let tt = [0, 17, 1500];
        let (mut s1, mut s2) = ([[0f32; GT]; GO], [[0f32; GT]; GO]);
        unsafe { gw_tile_avx2(299, g.as_ptr(), 300, xp.as_ptr(), tt, &mut s1) };
        gw_tile_generic(299, &g, 300, &xp, tt, &mut s2);
        for (r1, r2) in s1.iter().zip(&s2) {
            for (x, y) in r1.iter().zip(r2) {
                assert!((x - y).abs() < 1e-3, "{x} vs {y}");
            }
        }
    }
}
