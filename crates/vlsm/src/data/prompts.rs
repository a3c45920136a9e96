//! Prompts p0-p9 for a new dataset in medvlsm's templates (medvlsm-reference.md §4.1).
//!
//! Size, number and location follow medvlsm's `get_mask_decription` (scripts/features_from_img.py):
//! - components: 4-connected regions of `mask > 127`, in raster order of their first pixel;
//!   number = how many, in words (all of them, however small).
//! - size, per component, from its area / image area: > 0.30 "large", > 0.08 "medium",
//!   < 0.001 "tiny", else "small"; components of at most 1e-4 get no size word. The distinct
//!   words are listed in the order tiny, small, medium, large, joined with ", ".
//! - location, per component, on a 3x3 grid (cut at int(h/3), int(2h/3) and likewise for w):
//!   the only occupied cell; else the only cell holding >= 10% of the component; else, when no
//!   cell holds 10%, the least-occupied cell; else the centre of the component's box (grown
//!   by one pixel up and left, as medvlsm's contour-based box is), where the row is cut at h/3
//!   and 2h/3 and the column also at h/3 and 2h/3 (medvlsm compares columns with the height).
//!   Joined with ", ".
//!
//! medvlsm got shape and colour from a VQA model (OFA); here they come from the mask and image:
//! - shape of the largest component, from its equivalent ellipse (second moments, semi-axes
//!   a >= b): b/a < 0.75 "oval"; else area / (pi a b) < 0.85 "irregular"; else "round".
//! - colour: the mean sRGB of the region in CIELab (D65), named by the nearest of a small
//!   palette ([`COLOURS`]).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::{GrayImage, RgbImage};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use serde_json::{json, Value};

use super::IMAGE_EXTENSIONS;

/// Size, location and number words of one mask.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskWords {
    pub size: String,
    pub location: String,
    /// Connected components.
    pub number: usize,
}

const CELLS: [&str; 9] =
    ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"];

/// Colour names and their sRGB reference values.
pub const COLOURS: &[(&str, [u8; 3])] = &[
    ("white", [235, 225, 220]),
    ("pink", [225, 140, 140]),
    ("red", [190, 50, 45]),
    ("orange", [230, 130, 50]),
    ("yellow", [225, 200, 90]),
    ("tan", [200, 160, 120]),
    ("brown", [130, 80, 50]),
    ("black", [25, 20, 20]),
    ("gray", [128, 128, 128]),
];

/// 4-connected components of `mask > 127`: a label per pixel (0 = background) and the count.
pub fn label_components(mask: &GrayImage) -> (Vec<u32>, usize) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let m = mask.as_raw();
    let mut lab = vec![0u32; w * h];
    let mut n = 0;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if m[start] <= 127 || lab[start] != 0 {
            continue;
        }
        n += 1;
        lab[start] = n as u32;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let mut visit = |j: usize| {
                if m[j] > 127 && lab[j] == 0 {
                    lab[j] = n as u32;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
    }
    (lab, n)
}

/// medvlsm's size, location and number for a mask (see the module docs).
pub fn describe_mask(mask: &GrayImage) -> MaskWords {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let (lab, n) = label_components(mask);
    // Per component: pixel count, per-cell counts, bounding box.
    let mut area = vec![0usize; n];
    let mut cells = vec![[0usize; 9]; n];
    let mut bbox = vec![[usize::MAX, usize::MAX, 0, 0]; n]; // x0, y0, x1, y1 (inclusive)
    let (r1, r2, c1, c2) = (h / 3, 2 * h / 3, w / 3, 2 * w / 3);
    let band = |v: usize, a: usize, b: usize| {
        if v < a {
            0
        } else if v < b {
            1
        } else {
            2
        }
    };
    for y in 0..h {
        for x in 0..w {
            let l = lab[y * w + x];
            if l == 0 {
                continue;
            }
            let k = l as usize - 1;
            area[k] += 1;
            cells[k][band(y, r1, r2) * 3 + band(x, c1, c2)] += 1;
            let b = &mut bbox[k];
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
    }
    let total = (w * h) as f64;
    let mut sizes = Vec::new();
    let mut locations = Vec::new();
    for k in 0..n {
        let cov = area[k] as f64 / total;
        if cov > 1e-4 {
            sizes.push(if cov > 0.30 {
                "large"
            } else if cov > 0.08 {
                "medium"
            } else if cov < 0.001 {
                "tiny"
            } else {
                "small"
            });
        }
        let frac: Vec<f64> = cells[k].iter().map(|&c| c as f64 / area[k] as f64).collect();
        let nonzero: Vec<usize> = (0..9).filter(|&i| frac[i] != 0.0).collect();
        let significant: Vec<usize> = (0..9).filter(|&i| frac[i] >= 0.1).collect();
        let loc = if nonzero.len() == 1 {
            CELLS[nonzero[0]].to_string()
        } else if significant.is_empty() {
            // Python's stable sort by value: the first of the smallest.
            let i = *nonzero.iter().min_by(|&&a, &&b| frac[a].total_cmp(&frac[b])).expect("component is not empty");
            CELLS[i].to_string()
        } else if significant.len() == 1 {
            CELLS[significant[0]].to_string()
        } else {
            let b = bbox[k];
            let (x0, y0) = (b[0].saturating_sub(1) as f64, b[1].saturating_sub(1) as f64);
            let (x1, y1) = (b[2] as f64 + 1.0, b[3] as f64 + 1.0);
            let (cr, cc) = ((y0 + y1) / 2.0, (x0 + x1) / 2.0);
            let hf = h as f64;
            let pick = |v: f64, lo: &'static str, hi: &'static str| {
                if v < hf / 3.0 {
                    lo
                } else if v <= 2.0 * hf / 3.0 {
                    "center"
                } else {
                    hi
                }
            };
            let (pr, pc) = (pick(cr, "top", "bottom"), pick(cc, "left", "right"));
            match (pr, pc) {
                ("center", c) => c.to_string(),
                (r, "center") => r.to_string(),
                (r, c) => format!("{r} {c}"),
            }
        };
        locations.push(loc);
    }
    let size = ["tiny", "small", "medium", "large"]
        .iter()
        .filter(|s| sizes.contains(s))
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    MaskWords { size, location: locations.join(", "), number: n }
}

/// English words for a count, as `num2words` writes them ("one", "twenty-one", "one hundred
/// and five"); digits from 1000 on.
pub fn number_words(n: usize) -> String {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    match n {
        0..=19 => ONES[n].to_string(),
        20..=99 if n.is_multiple_of(10) => TENS[n / 10].to_string(),
        20..=99 => format!("{}-{}", TENS[n / 10], ONES[n % 10]),
        100..=999 if n.is_multiple_of(100) => format!("{} hundred", ONES[n / 100]),
        100..=999 => format!("{} hundred and {}", ONES[n / 100], number_words(n % 100)),
        _ => n.to_string(),
    }
}

/// Shape word of the largest component (see the module docs); "" for an empty mask.
pub fn shape_word(mask: &GrayImage) -> &'static str {
    let (lab, n) = label_components(mask);
    if n == 0 {
        return "";
    }
    let w = mask.width() as usize;
    let mut area = vec![0usize; n];
    for &l in &lab {
        if l > 0 {
            area[l as usize - 1] += 1;
        }
    }
    let big = (0..n).max_by_key(|&k| area[k]).unwrap() as u32 + 1;
    let (mut s, mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for (i, &l) in lab.iter().enumerate() {
        if l == big {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            s += 1.0;
            sx += x;
            sy += y;
            sxx += x * x;
            syy += y * y;
            sxy += x * y;
        }
    }
    let (mx, my) = (sx / s, sy / s);
    // Pixel variance 1/12 keeps a one-pixel component from having zero axes.
    let (cxx, cyy, cxy) = (sxx / s - mx * mx + 1.0 / 12.0, syy / s - my * my + 1.0 / 12.0, sxy / s - mx * my);
    let tr = cxx + cyy;
    let disc = ((cxx - cyy).powi(2) / 4.0 + cxy * cxy).sqrt();
    let (l1, l2) = (tr / 2.0 + disc, (tr / 2.0 - disc).max(1e-12));
    let (a, b) = (2.0 * l1.sqrt(), 2.0 * l2.sqrt());
    if b / a < 0.75 {
        "oval"
    } else if s / (std::f64::consts::PI * a * b) < 0.85 {
        "irregular"
    } else {
        "round"
    }
}

/// Colour word of the region under `mask` (see the module docs); "" for an empty mask.
pub fn colour_word(image: &RgbImage, mask: &GrayImage) -> &'static str {
    let mut sum = [0f64; 3];
    let mut n = 0f64;
    for (p, m) in image.pixels().zip(mask.pixels()) {
        if m[0] > 127 {
            for c in 0..3 {
                sum[c] += p[c] as f64;
            }
            n += 1.0;
        }
    }
    if n == 0.0 {
        return "";
    }
    let lab = srgb_to_lab([sum[0] / n, sum[1] / n, sum[2] / n]);
    COLOURS
        .iter()
        .map(|(name, rgb)| {
            let r = srgb_to_lab([rgb[0] as f64, rgb[1] as f64, rgb[2] as f64]);
            (name, (0..3).map(|i| (r[i] - lab[i]).powi(2)).sum::<f64>())
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(name, _)| *name)
        .unwrap()
}

/// sRGB (0..255) to CIELab, D65 white.
fn srgb_to_lab(rgb: [f64; 3]) -> [f64; 3] {
    let lin = |c: f64| {
        let c = c / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
    let f = |t: f64| if t > 216.0 / 24389.0 { t.cbrt() } else { (24389.0 / 27.0 * t + 16.0) / 116.0 };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// General descriptions for p7-p9 (medvlsm's `general_descriptions/*.json`); a class not
/// listed there gets one generic description.
pub fn general_descriptions(class_name: &str) -> Vec<String> {
    let list: &[&str] = match class_name {
        "polyp" => &[
            "a projecting growth of tissue",
            "often a bumpy flesh in rectum",
            "a small lump in the lining of colon",
            "a tissue growth that often resemble mushroom like stalks",
            "an abnormal growth of tissues projecting from a mucuos membrane",
        ],
        "skin melanoma" => &[
            "a spot with dark speckles",
            "a spot with irregular texture",
            "a dark sore with irregular texture",
            "an irregular sore with speckles",
            "a rough wound on skin",
        ],
        "foot ulcer" => &[
            "a wound in foot and toes",
            "a sore in foot and toes",
            "a sore in skin of foot and toes",
            "an abnormailty in foot and toes",
            "an open sore or lesion in foot and toes",
        ],
        _ => &["an abnormal region in the image"],
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// p0-p9 for one image in medvlsm's templates. Empty attribute words leave no double spaces.
pub fn prompts_for(class_name: &str, words: &MaskWords, shape: &str, colour: &str, descriptions: &[String]) -> Value {
    let tidy = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ").replace(" ,", ",");
    let number = number_words(words.number);
    let (size, location) = (&words.size, &words.location);
    let head = tidy(format!("{number} {size} {colour} {shape} {class_name}"));
    json!({
        "p0": "",
        "p1": class_name,
        "p2": tidy(format!("{shape} {class_name}")),
        "p3": tidy(format!("{colour} {shape} {class_name}")),
        "p4": tidy(format!("{size} {colour} {shape} {class_name}")),
        "p5": head,
        "p6": tidy(format!("{head}, located in {location} of the image")),
        "p7": descriptions.iter().map(|d| format!("{class_name} which is {d}")).collect::<Vec<_>>(),
        "p8": descriptions.iter().map(|d| format!("{head} which is {d}")).collect::<Vec<_>>(),
        "p9": descriptions.iter().map(|d| tidy(format!("{head} which is {d} located in {location} of the image"))).collect::<Vec<_>>(),
    })
}

/// How many records each split got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitCounts {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// `--split` "80/10/10" → [80, 10, 10] (`vlsm prompts`).
pub fn parse_split(s: &str) -> Result<[u32; 3]> {
    let bad = || anyhow!("--split: expected three whole numbers like 80/10/10, got '{s}'");
    let parts: Vec<u32> = s
        .split('/')
        .map(|p| {
            let p = p.trim();
            p.parse::<u32>().map_err(|_| {
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                    anyhow!("--split: ratio {p} is larger than {} in '{s}'", u32::MAX)
                } else {
                    bad()
                }
            })
        })
        .collect::<Result<_>>()?;
    let arr: [u32; 3] = parts.try_into().map_err(|_| bad())?;
    if arr.iter().all(|&v| v == 0) {
        return Err(anyhow!("--split: the ratios must not all be zero, got '{s}'"));
    }
    Ok(arr)
}

/// Writes `anns/{train,val,test}.json` for `dataset_dir` (with `images/` and `masks/`, a mask
/// per image with the same stem): shuffles the images with `seed`, splits them by the
/// `split` ratios (e.g. `[80, 10, 10]`; rounded, test gets the rest), and fills p0-p9.
pub fn generate(dataset_dir: &Path, class_name: &str, split: [u32; 3], seed: u64) -> Result<SplitCounts> {
    // u64: three u32 ratios cannot overflow it.
    let total: u64 = split.iter().map(|&v| v as u64).sum();
    if total == 0 {
        bail!("split {split:?} must have a non-zero total");
    }
    if class_name.trim().is_empty() {
        bail!("class name is empty");
    }
    let images = list_stems(&dataset_dir.join("images"))?;
    let masks = list_stems(&dataset_dir.join("masks"))?;
    let mut names: Vec<&String> = images.keys().collect();
    names.sort();
    if names.is_empty() {
        bail!("{}: no images", dataset_dir.join("images").display());
    }
    let descriptions = general_descriptions(class_name);
    let mut records = Vec::with_capacity(names.len());
    for (i, stem) in names.iter().enumerate() {
        let img_name = &images[*stem];
        let mask_name = masks.get(*stem).ok_or_else(|| {
            anyhow!(
                "{}: no mask for image {img_name} (expected {}.png or another image extension)",
                dataset_dir.join("masks").display(),
                stem
            )
        })?;
        let img_path = dataset_dir.join("images").join(img_name);
        let mask_path = dataset_dir.join("masks").join(mask_name);
        // Symlinks may point elsewhere inside the dataset, not outside it.
        super::names::check_inside(&dataset_dir.join("images"), &img_path)?;
        super::names::check_inside(&dataset_dir.join("masks"), &mask_path)?;
        let image = crate::io::read_rgb(&img_path)?;
        let mask = crate::io::read_mask(&mask_path)?;
        if image.dimensions() != mask.dimensions() {
            let (a, b) = (image.dimensions(), mask.dimensions());
            bail!(
                "{}: mask is {}x{} but image {} is {}x{}",
                mask_path.display(),
                b.0,
                b.1,
                img_path.display(),
                a.0,
                a.1
            );
        }
        let words = describe_mask(&mask);
        let prompts = prompts_for(class_name, &words, shape_word(&mask), colour_word(&image, &mask), &descriptions);
        records.push(json!({
            "bbox": overall_bbox(&mask),
            "cat": 0,
            "segment_id": stem,
            "img_name": img_name,
            "mask_name": mask_name,
            "sentences": [{"idx": 0, "sent_id": i, "sent": ""}],
            "sentences_num": 1,
            "prompts": prompts,
        }));
    }
    records.shuffle(&mut StdRng::seed_from_u64(seed));
    let n = records.len();
    let total = total as f64;
    let n_train = (n as f64 * split[0] as f64 / total).round() as usize;
    let n_val = ((n as f64 * split[1] as f64 / total).round() as usize).min(n - n_train);
    let test = records.split_off(n_train + n_val);
    let val = records.split_off(n_train);
    let counts = SplitCounts { train: records.len(), val: val.len(), test: test.len() };
    let anns = dataset_dir.join("anns");
    let files = [("train", records), ("val", val), ("test", test)]
        .into_iter()
        .map(|(name, recs)| Ok((anns.join(format!("{name}.json")), serde_json::to_vec_pretty(&recs)?)))
        .collect::<Result<Vec<_>>>()?;
    write_all_or_none(&files)?;
    Ok(counts)
}

/// Writes every `(path, bytes)` to a temporary file next to it first, and only when all are
/// written renames them into place, so that a failure leaves the old set of files (never a
/// mix of old and new splits). The temporary files of a failed run are removed.
fn write_all_or_none(files: &[(std::path::PathBuf, Vec<u8>)]) -> Result<()> {
    use std::io::Write;
    // A rename over a directory would fail half-way through; refuse it before writing.
    for (path, _) in files {
        if path.is_dir() {
            bail!("{}: is a directory, not a file; nothing was written", path.display());
        }
    }
    let mut tmps: Vec<std::path::PathBuf> = Vec::with_capacity(files.len());
    let result = (|| -> Result<()> {
        for (i, (path, bytes)) in files.iter().enumerate() {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: cannot create directory: {e}", dir.display()))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let tmp = dir.join(format!(".{name}.tmp.{}.{i}", std::process::id()));
            tmps.push(tmp.clone());
            let mut f = std::fs::File::create(&tmp).map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))?;
            f.write_all(bytes)
                .and_then(|_| f.sync_all())
                .map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))?;
        }
        for ((path, _), tmp) in files.iter().zip(&tmps) {
            std::fs::rename(tmp, path).map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for t in &tmps {
            let _ = std::fs::remove_file(t);
        }
    } else if let Some(dir) = files.first().and_then(|(p, _)| p.parent()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    result
}

/// medvlsm's overall box `[x0, y0, x1, y1]`: the foreground's box grown by one pixel up and
/// left and exclusive at the right and bottom (from its contour-based border); `[w, h, 0, 0]`
/// for an empty mask, as medvlsm leaves it.
pub fn overall_bbox(mask: &GrayImage) -> [u32; 4] {
    let (w, h) = mask.dimensions();
    let mut b = [w, h, 0, 0];
    let mut any = false;
    for (x, y, p) in mask.enumerate_pixels() {
        if p[0] > 127 {
            any = true;
            b[0] = b[0].min(x.saturating_sub(1));
            b[1] = b[1].min(y.saturating_sub(1));
            b[2] = b[2].max(x + 1);
            b[3] = b[3].max(y + 1);
        }
    }
    if any {
        b
    } else {
        [w, h, 0, 0]
    }
}

/// File stem -> file name for the images in a folder (stems with a known image extension).
fn list_stems(dir: &Path) -> Result<HashMap<String, String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| anyhow!("{}: cannot list folder: {e}", dir.display()))?;
    let mut out = HashMap::new();
    for e in rd {
        let e = e.map_err(|e| anyhow!("{}: cannot list folder: {e}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let lower = name.to_lowercase();
        if let Some(ext) = IMAGE_EXTENSIONS.iter().find(|x| lower.ends_with(&format!(".{x}"))) {
            let stem = name[..name.len() - ext.len() - 1].to_string();
            if let Some(other) = out.insert(stem.clone(), name.clone()) {
                bail!("{}: two files with stem {stem}: {other} and {name}", dir.display());
            }
        }
    }
    Ok(out)
}
