//! Segmentation: k-means (k-means++ seeding), connected components with statistics, and
//! quadtree split-and-merge.
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};

/// A small deterministic generator (SplitMix64) so results depend only on the seed.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Result of [`kmeans`].
#[derive(Clone, Debug)]
pub struct KmeansResult {
    /// Sum of squared distances of the samples to their centres (OpenCV's "compactness").
    pub compactness: f64,
    pub labels: Vec<usize>,
    /// `k` centres of `dims` values each.
    pub centers: Vec<Vec<f32>>,
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum()
}

/// `cv::kmeans` with `KMEANS_PP_CENTERS`: `data` holds `n` samples of `dims` values; the best of
/// `attempts` runs (each up to `max_iter` Lloyd iterations or until centres move less than `eps`).
pub fn kmeans(
    data: &[f32],
    dims: usize,
    k: usize,
    max_iter: usize,
    eps: f64,
    attempts: usize,
    seed: u64,
) -> Result<KmeansResult> {
    kmeans_with(data, dims, k, KmeansInit::PlusPlus, max_iter, eps, attempts, seed)
}

/// How [`kmeans_with`] picks the first centres of each attempt (`cv::KmeansFlags`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KmeansInit {
    /// k-means++ seeding (`KMEANS_PP_CENTERS`).
    PlusPlus,
    /// Uniform in the data's bounding box widened by `1/dims` of its size on each side, as
    /// OpenCV's `KMEANS_RANDOM_CENTERS`.
    Random,
    /// The means of these labels (one per sample, each `< k`) for the first attempt, as
    /// `KMEANS_USE_INITIAL_LABELS`; later attempts use k-means++.
    Labels(Vec<usize>),
}

/// [`kmeans`] with a choice of initial centres.
#[allow(clippy::too_many_arguments)]
pub fn kmeans_with(
    data: &[f32],
    dims: usize,
    k: usize,
    init: KmeansInit,
    max_iter: usize,
    eps: f64,
    attempts: usize,
    seed: u64,
) -> Result<KmeansResult> {
    if dims == 0 || data.is_empty() || !data.len().is_multiple_of(dims) {
        return Err(bad("kmeans", "data must hold a positive whole number of samples"));
    }
    if data.iter().any(|v| v.is_nan()) {
        return Err(bad("kmeans", "data contains NaN"));
    }
    let n = data.len() / dims;
    if k == 0 || k > n {
        return Err(bad("kmeans", format!("k = {k} must be in 1..={n}")));
    }
    let sample = |i: usize| &data[i * dims..(i + 1) * dims];
    let mut rng = Rng(seed);
    let mut best: Option<KmeansResult> = None;
    if let KmeansInit::Labels(l) = &init {
        if l.len() != n || l.iter().any(|&x| x >= k) {
            return Err(bad("kmeans", format!("initial labels must be {n} values in 0..{k}")));
        }
    }
    for attempt in 0..attempts.max(1) {
        let mut centers = match &init {
            KmeansInit::Labels(l) if attempt == 0 => {
                let mut sums = vec![vec![0f64; dims]; k];
                let mut counts = vec![0usize; k];
                for (i, &c) in l.iter().enumerate() {
                    counts[c] += 1;
                    for (s, &v) in sums[c].iter_mut().zip(sample(i)) {
                        *s += v as f64;
                    }
                }
                // An empty cluster starts at a random sample.
                (0..k)
                    .map(|j| {
                        if counts[j] == 0 {
                            sample((rng.next_u64() % n as u64) as usize).to_vec()
                        } else {
                            sums[j].iter().map(|&s| (s / counts[j] as f64) as f32).collect()
                        }
                    })
                    .collect()
            }
            KmeansInit::Random => {
                let mut lo = vec![f32::MAX; dims];
                let mut hi = vec![f32::MIN; dims];
                for i in 0..n {
                    for (j, &v) in sample(i).iter().enumerate() {
                        lo[j] = lo[j].min(v);
                        hi[j] = hi[j].max(v);
                    }
                }
                let margin = 1.0 / dims as f64;
                (0..k)
                    .map(|_| {
                        (0..dims)
                            .map(|j| {
                                let r = rng.uniform() * (1.0 + 2.0 * margin) - margin;
                                (lo[j] as f64 + (hi[j] as f64 - lo[j] as f64) * r) as f32
                            })
                            .collect()
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        if centers.is_empty() {
            // k-means++ seeding
            centers.push(sample((rng.next_u64() % n as u64) as usize).to_vec());
            let mut d: Vec<f64> = (0..n).map(|i| dist2(sample(i), &centers[0])).collect();
            while centers.len() < k {
                let total: f64 = d.iter().sum();
                let mut pick = n - 1;
                if total > 0.0 {
                    let mut r = rng.uniform() * total;
                    for (i, &di) in d.iter().enumerate() {
                        r -= di;
                        if r <= 0.0 {
                            pick = i;
                            break;
                        }
                    }
                } else {
                    pick = (rng.next_u64() % n as u64) as usize;
                }
                let c = sample(pick).to_vec();
                for (i, di) in d.iter_mut().enumerate() {
                    *di = di.min(dist2(sample(i), &c));
                }
                centers.push(c);
            }
        }
        let mut labels = vec![0usize; n];
        for _ in 0..max_iter.max(1) {
            for (i, l) in labels.iter_mut().enumerate() {
                let s = sample(i);
                let mut bd = f64::MAX;
                for (j, c) in centers.iter().enumerate() {
                    let dd = dist2(s, c);
                    if dd < bd {
                        bd = dd;
                        *l = j;
                    }
                }
            }
            let mut sums = vec![vec![0f64; dims]; k];
            let mut counts = vec![0usize; k];
            for (i, &l) in labels.iter().enumerate() {
                counts[l] += 1;
                for (s, &v) in sums[l].iter_mut().zip(sample(i)) {
                    *s += v as f64;
                }
            }
            let mut shift = 0f64;
            for j in 0..k {
                if counts[j] == 0 {
                    continue; // keep an empty cluster's centre
                }
                let new: Vec<f32> = sums[j].iter().map(|&s| (s / counts[j] as f64) as f32).collect();
                shift = shift.max(dist2(&new, &centers[j]));
                centers[j] = new;
            }
            if shift <= eps * eps {
                break;
            }
        }
        // final assignment and compactness
        let mut compactness = 0.0;
        for (i, l) in labels.iter_mut().enumerate() {
            let s = sample(i);
            let (mut bd, mut bj) = (f64::MAX, 0);
            for (j, c) in centers.iter().enumerate() {
                let dd = dist2(s, c);
                if dd < bd {
                    bd = dd;
                    bj = j;
                }
            }
            *l = bj;
            compactness += bd;
        }
        if best.as_ref().is_none_or(|b| compactness < b.compactness) {
            best = Some(KmeansResult { compactness, labels, centers });
        }
    }
    Ok(best.expect("at least one attempt"))
}

/// Output of [`connected_components_with_stats`].
#[derive(Clone, Debug)]
pub struct Components {
    /// Number of labels including the background label 0.
    pub count: usize,
    pub labels: Image<i32>,
    /// Per label: left, top, width, height, area (`cv::CC_STAT_*`).
    pub stats: Vec<[i32; 5]>,
    pub centroids: Vec<(f64, f64)>,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        parent[x as usize] = parent[parent[x as usize] as usize];
        x = parent[x as usize];
    }
    x
}

/// `cv::connectedComponentsWithStats` of the nonzero pixels of a single-channel 8-bit image,
/// 4- or 8-connectivity; labels numbered in raster order of each component's first pixel.
pub fn connected_components_with_stats(src: &Image<u8>, connectivity: u8) -> Result<Components> {
    src.check_cn("connected_components_with_stats", "1", &[1])?;
    if connectivity != 4 && connectivity != 8 {
        return Err(bad("connected_components_with_stats", "connectivity must be 4 or 8"));
    }
    let (w, h) = (src.width(), src.height());
    let px = src.data();
    let mut prov = vec![0u32; w * h];
    let mut parent: Vec<u32> = vec![0];
    for y in 0..h {
        for x in 0..w {
            if px[y * w + x] == 0 {
                continue;
            }
            let mut neigh = [0u32; 4];
            let mut nn = 0;
            let mut look = |xx: isize, yy: isize| {
                if xx >= 0 && yy >= 0 && (xx as usize) < w {
                    let l = prov[yy as usize * w + xx as usize];
                    if l != 0 {
                        neigh[nn] = l;
                        nn += 1;
                    }
                }
            };
            let (xi, yi) = (x as isize, y as isize);
            look(xi - 1, yi);
            look(xi, yi - 1);
            if connectivity == 8 {
                look(xi - 1, yi - 1);
                look(xi + 1, yi - 1);
            }
            if nn == 0 {
                let l = parent.len() as u32;
                parent.push(l);
                prov[y * w + x] = l;
            } else {
                let mut root = find(&mut parent, neigh[0]);
                for &l in &neigh[1..nn] {
                    let r = find(&mut parent, l);
                    if r != root {
                        let (a, b) = (root.min(r), root.max(r));
                        parent[b as usize] = a;
                        root = a;
                    }
                }
                prov[y * w + x] = root;
            }
        }
    }
    let mut final_label = vec![0i32; parent.len()];
    let mut next = 1i32;
    let mut labels = vec![0i32; w * h];
    for i in 0..w * h {
        if prov[i] != 0 {
            let r = find(&mut parent, prov[i]) as usize;
            if final_label[r] == 0 {
                final_label[r] = next;
                next += 1;
            }
            labels[i] = final_label[r];
        }
    }
    let count = next as usize;
    let mut stats = vec![[i32::MAX, i32::MAX, i32::MIN, i32::MIN, 0]; count];
    let mut sums = vec![(0f64, 0f64); count];
    for y in 0..h {
        for x in 0..w {
            let l = labels[y * w + x] as usize;
            let s = &mut stats[l];
            s[0] = s[0].min(x as i32);
            s[1] = s[1].min(y as i32);
            s[2] = s[2].max(x as i32);
            s[3] = s[3].max(y as i32);
            s[4] += 1;
            sums[l].0 += x as f64;
            sums[l].1 += y as f64;
        }
    }
    let mut centroids = Vec::with_capacity(count);
    for (s, sum) in stats.iter_mut().zip(&sums) {
        if s[4] == 0 {
            *s = [0; 5];
            centroids.push((f64::NAN, f64::NAN));
            continue;
        }
        s[2] = s[2] - s[0] + 1;
        s[3] = s[3] - s[1] + 1;
        centroids.push((sum.0 / s[4] as f64, sum.1 / s[4] as f64));
    }
    Ok(Components { count, labels: Image::from_vec(w, h, 1, labels)?, stats, centroids })
}

/// Quadtree split-and-merge on a single-channel image: squares are split while their range
/// (max - min) exceeds `split_range` and they are larger than `min_size`; adjacent leaves whose
/// means differ by at most `merge_diff` are merged. Returns region labels from 0.
pub fn split_merge<T: Pixel>(src: &Image<T>, split_range: f64, min_size: usize, merge_diff: f64) -> Result<Image<i32>> {
    src.check_cn("split_merge", "1", &[1])?;
    if min_size == 0 {
        return Err(bad("split_merge", "min_size must be positive"));
    }
    let (w, h) = (src.width(), src.height());
    let px = src.data();
    let mut leaves: Vec<(usize, usize, usize, usize, f64)> = Vec::new();
    let mut stack = vec![(0usize, 0usize, w, h)];
    while let Some((x, y, bw, bh)) = stack.pop() {
        let (mut lo, mut hi, mut sum) = (f64::MAX, f64::MIN, 0.0);
        for yy in y..y + bh {
            for xx in x..x + bw {
                let v = px[yy * w + xx].to_f64();
                lo = lo.min(v);
                hi = hi.max(v);
                sum += v;
            }
        }
        if hi - lo > split_range && (bw > min_size || bh > min_size) && bw * bh > 1 {
            let (hw, hh) = (bw.div_ceil(2), bh.div_ceil(2));
            for (ox, oy, ow, oh) in
                [(0, 0, hw, hh), (hw, 0, bw - hw, hh), (0, hh, hw, bh - hh), (hw, hh, bw - hw, bh - hh)]
            {
                if ow > 0 && oh > 0 {
                    stack.push((x + ox, y + oy, ow, oh));
                }
            }
        } else {
            leaves.push((x, y, bw, bh, sum / (bw * bh) as f64));
        }
    }
    let mut leaf_of = vec![0u32; w * h];
    for (i, &(x, y, bw, bh, _)) in leaves.iter().enumerate() {
        for yy in y..y + bh {
            leaf_of[yy * w + x..yy * w + x + bw].fill(i as u32);
        }
    }
    let mut parent: Vec<u32> = (0..leaves.len() as u32).collect();
    for y in 0..h {
        for x in 0..w {
            let a = leaf_of[y * w + x];
            for (nx, ny) in [(x + 1, y), (x, y + 1)] {
                if nx < w && ny < h {
                    let b = leaf_of[ny * w + nx];
                    if a != b && (leaves[a as usize].4 - leaves[b as usize].4).abs() <= merge_diff {
                        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                        if ra != rb {
                            parent[ra.max(rb) as usize] = ra.min(rb);
                        }
                    }
                }
            }
        }
    }
    let mut ids = vec![-1i32; leaves.len()];
    let mut next = 0;
    let mut out = vec![0i32; w * h];
    for i in 0..w * h {
        let r = find(&mut parent, leaf_of[i]) as usize;
        if ids[r] < 0 {
            ids[r] = next;
            next += 1;
        }
        out[i] = ids[r];
    }
    Image::from_vec(w, h, 1, out)
}
