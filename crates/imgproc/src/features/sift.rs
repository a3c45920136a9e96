//! SIFT (Lowe 2004) as OpenCV's `cv::SIFT`: upscaled first octave, 3 layers per octave,
//! DoG extrema refined by a quadratic fit, contrast (0.04) and edge (10) tests, 36-bin
//! orientation histograms, 4x4x8 descriptors; brute-force L2 matching with Lowe's ratio test.
use crate::border::BorderType;
use crate::error::Result;
use crate::filter::gaussian_blur;
use crate::geometry::{resize, Interpolation};
use crate::image::Image;
use rayon::prelude::*;

const LAYERS: usize = 3;
const SIGMA: f32 = 1.6;
const CONTRAST: f32 = 0.04;
const EDGE: f32 = 10.0;
const INIT_SIGMA: f32 = 0.5;
const BORDER: usize = 5;
const MAX_INTERP: usize = 5;
const ORI_BINS: usize = 36;
const ORI_PEAK: f32 = 0.8;
const D: usize = 4;
const N: usize = 8;

/// A detected keypoint, in OpenCV's conventions (`angle` in degrees, `octave` packed as
/// `octave & 255 | layer << 8 | sub-layer << 16`, octave -1 for the upscaled one).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPoint {
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub angle: f32,
    pub response: f32,
    pub octave: i32,
}

struct Plane {
    w: usize,
    h: usize,
    d: Vec<f32>,
}

impl Plane {
    #[inline]
    fn at(&self, x: usize, y: usize) -> f32 {
        self.d[y * self.w + x]
    }
    fn from_image(img: Image<f32>) -> Self {
        Plane { w: img.width(), h: img.height(), d: img.into_vec() }
    }
    fn to_image(&self) -> Image<f32> {
        Image::from_vec(self.w, self.h, 1, self.d.clone()).expect("single channel")
    }
}

fn blur(p: &Plane, sigma: f32) -> Result<Plane> {
    Ok(Plane::from_image(gaussian_blur(&p.to_image(), (0, 0), sigma as f64, sigma as f64, BorderType::Reflect101)?))
}

/// Gaussian pyramid (`LAYERS + 3` images per octave) of the 2x upscaled image.
fn gaussian_pyramid(gray: &Image<u8>) -> Result<Vec<Vec<Plane>>> {
    let f = gray.to_f32();
    let dbl = resize(&f, (gray.width() * 2, gray.height() * 2), Interpolation::Linear)?;
    let sig_diff = (SIGMA * SIGMA - INIT_SIGMA * INIT_SIGMA * 4.0).max(0.01).sqrt();
    let base = blur(&Plane::from_image(dbl), sig_diff)?;
    let n_oct = ((base.w.min(base.h) as f64).log2() - 2.0).round().max(1.0) as usize;
    let k = 2f64.powf(1.0 / LAYERS as f64);
    let mut sig = [SIGMA as f64; LAYERS + 3];
    for (i, s) in sig.iter_mut().enumerate().skip(1) {
        let prev = k.powi(i as i32 - 1) * SIGMA as f64;
        let total = prev * k;
        *s = (total * total - prev * prev).sqrt();
    }
    let mut pyr: Vec<Vec<Plane>> = Vec::with_capacity(n_oct);
    for o in 0..n_oct {
        let mut oct = Vec::with_capacity(LAYERS + 3);
        if o == 0 {
            oct.push(Plane { w: base.w, h: base.h, d: base.d.clone() });
        } else {
            let src = &pyr[o - 1][LAYERS];
            let (w, h) = (src.w / 2, src.h / 2);
            if w < 2 * BORDER + 2 || h < 2 * BORDER + 2 {
                break;
            }
            let d = (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| src.at(2 * x, 2 * y)).collect();
            oct.push(Plane { w, h, d });
        }
        for i in 1..LAYERS + 3 {
            let b = blur(&oct[i - 1], sig[i] as f32)?;
            oct.push(b);
        }
        pyr.push(oct);
    }
    Ok(pyr)
}

fn dog_pyramid(g: &[Vec<Plane>]) -> Vec<Vec<Plane>> {
    g.iter()
        .map(|oct| {
            oct.windows(2)
                .map(|p| Plane { w: p[0].w, h: p[0].h, d: p[1].d.iter().zip(&p[0].d).map(|(a, b)| a - b).collect() })
                .collect()
        })
        .collect()
}

fn solve3(h: [[f32; 3]; 3], b: [f32; 3]) -> Option<[f32; 3]> {
    let det = |m: &[[f32; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&h);
    if d.abs() < 1e-12 || !d.is_finite() {
        return None;
    }
    let mut x = [0f32; 3];
    for (c, xc) in x.iter_mut().enumerate() {
        let mut m = h;
        for r in 0..3 {
            m[r][c] = b[r];
        }
        *xc = det(&m) / d;
    }
    Some(x)
}

/// Quadratic refinement of an extremum; returns the keypoint (octave-local pyramid index
/// `o`, refined layer) or `None` when it drifts away, has low contrast or lies on an edge.
fn refine(dog: &[Plane], o: usize, mut layer: usize, mut r: usize, mut c: usize) -> Option<(KeyPoint, usize)> {
    let img_scale = 1.0 / 255.0f32;
    let (ds1, ds2, dsc) = (img_scale * 0.5, img_scale, img_scale * 0.25);
    let (w, h) = (dog[0].w, dog[0].h);
    let (mut xi, mut xr, mut xc) = (0f32, 0f32, 0f32);
    let mut converged = false;
    for _ in 0..MAX_INTERP {
        let (prev, cur, next) = (&dog[layer - 1], &dog[layer], &dog[layer + 1]);
        let dd = [
            (cur.at(c + 1, r) - cur.at(c - 1, r)) * ds1,
            (cur.at(c, r + 1) - cur.at(c, r - 1)) * ds1,
            (next.at(c, r) - prev.at(c, r)) * ds1,
        ];
        let v2 = cur.at(c, r) * 2.0;
        let dxx = (cur.at(c + 1, r) + cur.at(c - 1, r) - v2) * ds2;
        let dyy = (cur.at(c, r + 1) + cur.at(c, r - 1) - v2) * ds2;
        let dss = (next.at(c, r) + prev.at(c, r) - v2) * ds2;
        let dxy = (cur.at(c + 1, r + 1) - cur.at(c - 1, r + 1) - cur.at(c + 1, r - 1) + cur.at(c - 1, r - 1)) * dsc;
        let dxs = (next.at(c + 1, r) - next.at(c - 1, r) - prev.at(c + 1, r) + prev.at(c - 1, r)) * dsc;
        let dys = (next.at(c, r + 1) - next.at(c, r - 1) - prev.at(c, r + 1) + prev.at(c, r - 1)) * dsc;
        let x = solve3([[dxx, dxy, dxs], [dxy, dyy, dys], [dxs, dys, dss]], dd)?;
        (xi, xr, xc) = (-x[2], -x[1], -x[0]);
        if xi.abs() < 0.5 && xr.abs() < 0.5 && xc.abs() < 0.5 {
            converged = true;
            break;
        }
        if xi.abs() > 1e6 || xr.abs() > 1e6 || xc.abs() > 1e6 {
            return None;
        }
        let nc = c as i64 + xc.round() as i64;
        let nr = r as i64 + xr.round() as i64;
        let nl = layer as i64 + xi.round() as i64;
        if nl < 1
            || nl > LAYERS as i64
            || nc < BORDER as i64
            || nc >= (w - BORDER) as i64
            || nr < BORDER as i64
            || nr >= (h - BORDER) as i64
        {
            return None;
        }
        (c, r, layer) = (nc as usize, nr as usize, nl as usize);
    }
    if !converged {
        return None;
    }
    let (prev, cur, next) = (&dog[layer - 1], &dog[layer], &dog[layer + 1]);
    let dd = [
        (cur.at(c + 1, r) - cur.at(c - 1, r)) * ds1,
        (cur.at(c, r + 1) - cur.at(c, r - 1)) * ds1,
        (next.at(c, r) - prev.at(c, r)) * ds1,
    ];
    let t = dd[0] * xc + dd[1] * xr + dd[2] * xi;
    let contr = cur.at(c, r) * img_scale + t * 0.5;
    if contr.abs() * (LAYERS as f32) < CONTRAST {
        return None;
    }
    let v2 = cur.at(c, r) * 2.0;
    let dxx = (cur.at(c + 1, r) + cur.at(c - 1, r) - v2) * ds2;
    let dyy = (cur.at(c, r + 1) + cur.at(c, r - 1) - v2) * ds2;
    let dxy = (cur.at(c + 1, r + 1) - cur.at(c - 1, r + 1) - cur.at(c + 1, r - 1) + cur.at(c - 1, r - 1)) * dsc;
    let (tr, det) = (dxx + dyy, dxx * dyy - dxy * dxy);
    if det <= 0.0 || tr * tr * EDGE >= (EDGE + 1.0) * (EDGE + 1.0) * det {
        return None;
    }
    let scale = (1u32 << o) as f32;
    let kp = KeyPoint {
        x: (c as f32 + xc) * scale,
        y: (r as f32 + xr) * scale,
        size: SIGMA * 2f32.powf((layer as f32 + xi) / LAYERS as f32) * scale * 2.0,
        angle: 0.0,
        response: contr.abs(),
        octave: o as i32 + ((layer as i32) << 8) + ((((xi + 0.5) * 255.0).round() as i32) << 16),
    };
    Some((kp, layer))
}

fn atan2_deg(y: f32, x: f32) -> f32 {
    let a = y.atan2(x).to_degrees();
    if a < 0.0 {
        a + 360.0
    } else {
        a
    }
}

fn orientation_hist(img: &Plane, px: i64, py: i64, radius: i64, sigma: f32) -> [f32; ORI_BINS] {
    let expf_scale = -1.0 / (2.0 * sigma * sigma);
    let mut tmp = [0f32; ORI_BINS];
    for i in -radius..=radius {
        let y = py + i;
        if y <= 0 || y >= img.h as i64 - 1 {
            continue;
        }
        for j in -radius..=radius {
            let x = px + j;
            if x <= 0 || x >= img.w as i64 - 1 {
                continue;
            }
            let (x, y) = (x as usize, y as usize);
            let dx = img.at(x + 1, y) - img.at(x - 1, y);
            let dy = img.at(x, y - 1) - img.at(x, y + 1);
            let wgt = (((i * i + j * j) as f32) * expf_scale).exp();
            let mag = (dx * dx + dy * dy).sqrt();
            let mut bin = ((ORI_BINS as f32 / 360.0) * atan2_deg(dy, dx)).round() as i64;
            bin = bin.rem_euclid(ORI_BINS as i64);
            tmp[bin as usize] += wgt * mag;
        }
    }
    let n = ORI_BINS;
    let mut hist = [0f32; ORI_BINS];
    for i in 0..n {
        let t = |k: i64| tmp[(i as i64 + k).rem_euclid(n as i64) as usize];
        hist[i] = (t(-2) + t(2)) * (1.0 / 16.0) + (t(-1) + t(1)) * (4.0 / 16.0) + t(0) * (6.0 / 16.0);
    }
    hist
}

/// `cv::SIFT::detect` with default parameters on an 8-bit single-channel image.
pub fn sift_detect(gray: &Image<u8>) -> Result<Vec<KeyPoint>> {
    Ok(sift_detect_and_compute(gray)?.0)
}

/// Keypoints and their 128-value descriptors (values 0-255, as OpenCV's).
pub fn sift_detect_and_compute(gray: &Image<u8>) -> Result<(Vec<KeyPoint>, Vec<[f32; 128]>)> {
    gray.check_cn("sift", "1", &[1])?;
    let gpyr = gaussian_pyramid(gray)?;
    let dpyr = dog_pyramid(&gpyr);
    let threshold = (0.5 * CONTRAST / LAYERS as f32 * 255.0).floor();
    let mut found: Vec<(KeyPoint, usize, usize)> = Vec::new(); // keypoint, octave, layer
    for (o, dog) in dpyr.iter().enumerate() {
        let (w, h) = (dog[0].w, dog[0].h);
        if w <= 2 * BORDER || h <= 2 * BORDER {
            continue;
        }
        for layer in 1..=LAYERS {
            let pts: Vec<Vec<(KeyPoint, usize)>> = (BORDER..h - BORDER)
                .into_par_iter()
                .map(|r| {
                    let mut out = Vec::new();
                    let cur = &dog[layer];
                    for c in BORDER..w - BORDER {
                        let v = cur.at(c, r);
                        if v.abs() <= threshold || !is_extremum(dog, layer, r, c, v) {
                            continue;
                        }
                        if let Some(kl) = refine(dog, o, layer, r, c) {
                            out.push(kl);
                        }
                    }
                    out
                })
                .collect();
            for (kp, l) in pts.into_iter().flatten() {
                found.push((kp, o, l));
            }
        }
    }
    // Orientation assignment (may duplicate a keypoint per strong peak).
    let oriented: Vec<Vec<(KeyPoint, usize, usize)>> = found
        .par_iter()
        .map(|(kp, o, layer)| {
            let img = &gpyr[*o][*layer];
            let sc = (1u32 << o) as f32;
            let scl_octv = kp.size * 0.5 / sc;
            let hist = orientation_hist(
                img,
                (kp.x / sc).round() as i64,
                (kp.y / sc).round() as i64,
                (3.0 * 1.5 * scl_octv).round() as i64,
                1.5 * scl_octv,
            );
            let omax = hist.iter().cloned().fold(0.0, f32::max);
            let thr = omax * ORI_PEAK;
            let n = ORI_BINS;
            let mut v = Vec::new();
            for j in 0..n {
                let l = hist[(j + n - 1) % n];
                let r = hist[(j + 1) % n];
                if hist[j] > l && hist[j] > r && hist[j] >= thr {
                    let mut bin = j as f32 + 0.5 * (l - r) / (l - 2.0 * hist[j] + r);
                    if bin < 0.0 {
                        bin += n as f32;
                    } else if bin >= n as f32 {
                        bin -= n as f32;
                    }
                    let mut k = kp.clone();
                    k.angle = 360.0 - (360.0 / n as f32) * bin;
                    if (k.angle - 360.0).abs() < f32::EPSILON {
                        k.angle = 0.0;
                    }
                    v.push((k, *o, *layer));
                }
            }
            v
        })
        .collect();
    let mut kps: Vec<(KeyPoint, usize, usize)> = oriented.into_iter().flatten().collect();
    // Sort and drop duplicates as `KeyPointsFilter::removeDuplicatedSorted`.
    kps.sort_by(|a, b| {
        let (a, b) = (&a.0, &b.0);
        a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)).then(b.size.total_cmp(&a.size)).then(a.angle.total_cmp(&b.angle))
    });
    kps.dedup_by(|b, a| a.0.x == b.0.x && a.0.y == b.0.y && a.0.size == b.0.size && a.0.angle == b.0.angle);
    let descs: Vec<[f32; 128]> = kps
        .par_iter()
        .map(|(kp, o, l)| {
            let sc = (1u32 << o) as f32;
            let mut angle: f32 = 360.0 - kp.angle;
            if (angle - 360.0).abs() < f32::EPSILON {
                angle = 0.0;
            }
            descriptor(&gpyr[*o][*l], kp.x / sc, kp.y / sc, angle, kp.size / sc * 0.5)
        })
        .collect();
    // Back to input coordinates: the first octave was upscaled 2x.
    let kps = kps
        .into_iter()
        .map(|(mut k, _, _)| {
            k.x *= 0.5;
            k.y *= 0.5;
            k.size *= 0.5;
            k.octave = (k.octave & !255) | ((k.octave - 1) & 255);
            k
        })
        .collect();
    Ok((kps, descs))
}

fn is_extremum(dog: &[Plane], layer: usize, r: usize, c: usize, v: f32) -> bool {
    let mut is_max = v > 0.0;
    let mut is_min = v < 0.0;
    for p in &dog[layer - 1..=layer + 1] {
        for y in r - 1..=r + 1 {
            let row = &p.d[y * p.w + c - 1..y * p.w + c + 2];
            for &n in row {
                is_max &= v >= n;
                is_min &= v <= n;
            }
        }
        if !is_max && !is_min {
            return false;
        }
    }
    true
}

fn descriptor(img: &Plane, ptx: f32, pty: f32, ori: f32, scl: f32) -> [f32; 128] {
    let (px, py) = (ptx.round() as i64, pty.round() as i64);
    let (mut cos_t, mut sin_t) = (ori.to_radians().cos(), ori.to_radians().sin());
    let bins_per_rad = N as f32 / 360.0;
    let exp_scale = -1.0 / (D as f32 * D as f32 * 0.5);
    let hist_width = 3.0 * scl;
    let mut radius = (hist_width * std::f32::consts::SQRT_2 * (D as f32 + 1.0) * 0.5).round() as i64;
    radius = radius.min(((img.w * img.w + img.h * img.h) as f64).sqrt() as i64);
    cos_t /= hist_width;
    sin_t /= hist_width;
    let mut hist = vec![0f32; (D + 2) * (D + 2) * (N + 2)];
    let d = D as f32;
    for i in -radius..=radius {
        for j in -radius..=radius {
            let c_rot = j as f32 * cos_t - i as f32 * sin_t;
            let r_rot = j as f32 * sin_t + i as f32 * cos_t;
            let rbin = r_rot + d / 2.0 - 0.5;
            let cbin = c_rot + d / 2.0 - 0.5;
            let (r, c) = (py + i, px + j);
            if !(rbin > -1.0
                && rbin < d
                && cbin > -1.0
                && cbin < d
                && r > 0
                && r < img.h as i64 - 1
                && c > 0
                && c < img.w as i64 - 1)
            {
                continue;
            }
            let (r, c) = (r as usize, c as usize);
            let dx = img.at(c + 1, r) - img.at(c - 1, r);
            let dy = img.at(c, r - 1) - img.at(c, r + 1);
            let wgt = ((c_rot * c_rot + r_rot * r_rot) * exp_scale).exp();
            let mag = (dx * dx + dy * dy).sqrt() * wgt;
            let obin = (atan2_deg(dy, dx) - ori) * bins_per_rad;
            let (r0, c0, o0) = (rbin.floor(), cbin.floor(), obin.floor());
            let (rb, cb, ob) = (rbin - r0, cbin - c0, obin - o0);
            let mut o0 = o0 as i64;
            if o0 < 0 {
                o0 += N as i64;
            }
            if o0 >= N as i64 {
                o0 -= N as i64;
            }
            let v_r1 = mag * rb;
            let v_r0 = mag - v_r1;
            let v_rc11 = v_r1 * cb;
            let v_rc10 = v_r1 - v_rc11;
            let v_rc01 = v_r0 * cb;
            let v_rc00 = v_r0 - v_rc01;
            let v111 = v_rc11 * ob;
            let v110 = v_rc11 - v111;
            let v101 = v_rc10 * ob;
            let v100 = v_rc10 - v101;
            let v011 = v_rc01 * ob;
            let v010 = v_rc01 - v011;
            let v001 = v_rc00 * ob;
            let v000 = v_rc00 - v001;
            let idx = (((r0 as i64 + 1) * (D as i64 + 2) + c0 as i64 + 1) * (N as i64 + 2) + o0) as usize;
            let (n2, d2) = (N + 2, D + 2);
            hist[idx] += v000;
            hist[idx + 1] += v001;
            hist[idx + n2] += v010;
            hist[idx + n2 + 1] += v011;
            hist[idx + d2 * n2] += v100;
            hist[idx + d2 * n2 + 1] += v101;
            hist[idx + (d2 + 1) * n2] += v110;
            hist[idx + (d2 + 1) * n2 + 1] += v111;
        }
    }
    let mut dst = [0f32; 128];
    for i in 0..D {
        for j in 0..D {
            let idx = ((i + 1) * (D + 2) + (j + 1)) * (N + 2);
            hist[idx] += hist[idx + N];
            hist[idx + 1] += hist[idx + N + 1];
            for k in 0..N {
                dst[(i * D + j) * N + k] = hist[idx + k];
            }
        }
    }
    let nrm2: f32 = dst.iter().map(|v| v * v).sum();
    let thr = nrm2.sqrt() * 0.2;
    let mut nrm2 = 0f32;
    for v in dst.iter_mut() {
        *v = v.min(thr);
        nrm2 += *v * *v;
    }
    let k = 512.0 / nrm2.sqrt().max(f32::EPSILON);
    for v in dst.iter_mut() {
        *v = (*v * k).round_ties_even().clamp(0.0, 255.0);
    }
    dst
}

/// Brute-force L2 matching of `query` against `train` with Lowe's ratio test: pairs
/// `(query index, train index, distance)` whose best distance is below `ratio` times the second.
pub fn match_ratio(query: &[[f32; 128]], train: &[[f32; 128]], ratio: f32) -> Vec<(usize, usize, f32)> {
    query
        .par_iter()
        .enumerate()
        .filter_map(|(qi, q)| {
            let (mut b1, mut b2, mut bi) = (f32::INFINITY, f32::INFINITY, 0);
            for (ti, t) in train.iter().enumerate() {
                let d: f32 = q.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum();
                if d < b1 {
                    (b2, b1, bi) = (b1, d, ti);
                } else if d < b2 {
                    b2 = d;
                }
            }
            let (d1, d2) = (b1.sqrt(), b2.sqrt());
            (train.len() >= 2 && d1 < ratio * d2).then_some((qi, bi, d1))
        })
        .collect()
}
