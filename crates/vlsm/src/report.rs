//! `report.html` of `vlsm eval`: one self-contained file (inline SVG charts, PNG data URIs).

use std::fmt::Write as _;
use std::io::Cursor;

use anyhow::Result;
use image::{DynamicImage, ImageFormat};

use super::{case_image, EvalOptions, EvalReport, ImageResult};

const PALETTE: &[&str] = &["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"];

pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Grouped bars: Dice per prompt key, one bar per dataset (and pooled with several).
fn dice_per_prompt_svg(r: &EvalReport) -> String {
    let mut series: Vec<String> = r.prompts.values().flat_map(|p| p.datasets.keys().cloned()).collect();
    series.sort();
    series.dedup();
    if series.len() > 1 {
        series.push("(pooled)".into());
    }
    let keys = &r.key_order;
    let (h, left, top, bottom) = (260.0, 40.0, 10.0, 40.0);
    let group = (series.len() as f64 * 14.0 + 16.0).max(40.0);
    let w = left + group * keys.len() as f64 + 160.0;
    let plot_h = h - top - bottom;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">");
    for t in 0..=4 {
        let v = t as f64 / 4.0;
        let y = top + plot_h * (1.0 - v);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"4\" y=\"{}\">{v:.2}</text>",
            w - 160.0,
            y + 4.0
        );
    }
    for (ki, k) in keys.iter().enumerate() {
        let p = &r.prompts[k];
        let x0 = left + ki as f64 * group + 8.0;
        for (si, name) in series.iter().enumerate() {
            let m = if name == "(pooled)" { Some(&p.pooled) } else { p.datasets.get(name) };
            if let Some(m) = m {
                let bh = plot_h * m.dice.clamp(0.0, 1.0);
                let _ = write!(
                    s,
                    "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"{bh}\" fill=\"{}\"><title>{} {}: {:.4}</title></rect>",
                    x0 + si as f64 * 14.0,
                    top + plot_h - bh,
                    PALETTE[si % PALETTE.len()],
                    esc(k),
                    esc(name),
                    m.dice
                );
            }
        }
        let _ = write!(s, "<text x=\"{x0}\" y=\"{}\">{}</text>", h - bottom + 16.0, esc(k));
    }
    for (si, name) in series.iter().enumerate() {
        let (x, y) = (w - 150.0, top + 14.0 * si as f64);
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            PALETTE[si % PALETTE.len()],
            x + 14.0,
            y + 9.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Histogram of per-image Dice (all prompts), 20 bins over [0, 1].
fn histogram_svg(results: &[ImageResult]) -> String {
    let mut bins = [0usize; 20];
    for r in results {
        bins[((r.dice.clamp(0.0, 1.0) * 20.0) as usize).min(19)] += 1;
    }
    let max = *bins.iter().max().unwrap_or(&1).max(&1) as f64;
    let (w, h, left, top, bottom) = (460.0, 220.0, 40.0, 10.0, 30.0);
    let bw = (w - left - 10.0) / 20.0;
    let plot_h = h - top - bottom;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">");
    for (i, &c) in bins.iter().enumerate() {
        let bh = plot_h * c as f64 / max;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#4e79a7\"><title>{:.2}-{:.2}: {c}</title></rect>",
            left + i as f64 * bw,
            top + plot_h - bh,
            bw - 1.0,
            i as f64 / 20.0,
            (i + 1) as f64 / 20.0
        );
    }
    for t in 0..=4 {
        let v = t as f64 / 4.0;
        let _ = write!(s, "<text x=\"{}\" y=\"{}\">{v:.2}</text>", left + v * 20.0 * bw - 8.0, h - 10.0);
    }
    let _ = write!(
        s,
        "<text x=\"4\" y=\"{}\">{}</text><text x=\"4\" y=\"{}\">0</text>",
        top + 10.0,
        max as usize,
        top + plot_h
    );
    s.push_str("</svg>");
    s
}

fn png_data_uri(img: DynamicImage) -> Result<String> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Png)?;
    Ok(format!("data:image/png;base64,{}", base64(buf.get_ref())))
}

/// The report page.
pub fn html(r: &EvalReport, opts: &EvalOptions) -> Result<String> {
    let mut s = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>vlsm eval</title><style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block;margin:6px;font-size:12px;max-width:340px}</style></head><body>");
    let _ = write!(
        s,
        "<h1>Evaluation</h1><p>model <code>{}</code>, split <code>{}</code>, threshold {}</p>",
        esc(&r.model),
        esc(&r.split),
        r.threshold
    );
    let volumes = r.hd95_unit == "mm";
    if volumes {
        s.push_str("<p>Volumes: Dice and IoU over all voxels, HD95 in mm (voxel spacing), slice Dice = the mean over slices of the per-slice Dice (a slice with empty target and prediction scores 1).</p>");
    }
    let _ = write!(
        s,
        "<h2>Metrics</h2><table><tr><th>prompt</th><th>dataset</th><th>n</th><th>Dice</th><th>IoU</th><th>HD95 ({})</th><th>HD95 undefined</th><th>Dice (model res)</th><th>IoU (model res)</th>{}</tr>",
        r.hd95_unit,
        if volumes { "<th>slice Dice</th>" } else { "" }
    );
    for k in &r.key_order {
        let p = &r.prompts[k];
        let rows = p.datasets.iter().map(|(n, m)| (n.as_str(), m)).chain(std::iter::once(("(pooled)", &p.pooled)));
        for (name, m) in rows {
            let hd = m.hd95.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            let sd = m.slice_dice.map(|v| format!("<td>{v:.4}</td>")).unwrap_or_default();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{hd}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td>{sd}</tr>",
                esc(k), esc(name), m.n, m.dice, m.iou, m.hd95_undefined, m.dice_model_res, m.iou_model_res
            );
        }
    }
    s.push_str("</table>");
    if let Some(ab) = &r.ablation {
        s.push_str("<h2>Does the text matter?</h2><p>Dice (and share of images called present) under the dataset's own prompt, the empty prompt, another dataset's prompt and the own prompt's words shuffled.</p><table><tr><th>dataset</th><th>key</th><th>n</th><th>own</th><th>empty</th><th>other dataset's</th><th>shuffled</th></tr>");
        let cell = |d: Option<f64>, p: Option<f64>| match (d, p) {
            (Some(d), Some(p)) => format!("{d:.4} ({:.0} %)", p * 100.0),
            _ => "-".into(),
        };
        for (name, a) in ab {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(&a.prompt_key),
                a.n,
                cell(Some(a.own), Some(a.present_own)),
                cell(Some(a.empty), Some(a.present_empty)),
                cell(a.other, a.present_other),
                cell(Some(a.shuffled), Some(a.present_shuffled))
            );
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Dice per prompt</h2>");
    s.push_str(&dice_per_prompt_svg(r));
    s.push_str("<h2>Dice histogram (all images and prompts)</h2>");
    s.push_str(&histogram_svg(&r.results));
    let mut worst: Vec<&ImageResult> = r.results.iter().collect();
    worst.sort_by(|a, b| a.dice.total_cmp(&b.dice));
    worst.truncate(opts.worst);
    if volumes {
        let _ = write!(
            s,
            "<h2>Worst {} volumes</h2><p>per volume the slices (along the last voxel axis) with the most wrong voxels; prediction green, target outline red</p>",
            worst.len()
        );
        for c in worst {
            s.push_str(&volume_figures(c, opts)?);
        }
        s.push_str("</body></html>\n");
        return Ok(s);
    }
    let _ = write!(s, "<h2>Worst {} cases</h2><p>prediction green, target outline red</p>", worst.len());
    for c in worst {
        let img = crate::io::read_rgb(&c.image_path);
        let tgt = crate::io::read_mask(&c.mask_path);
        let pred = crate::io::read_mask(&opts.out.join(&c.mask_file));
        let (Ok(img), Ok(tgt), Ok(pred)) = (img, tgt, pred) else {
            continue;
        };
        let uri = png_data_uri(DynamicImage::ImageRgb8(case_image(&img, &pred, &tgt, 320)))?;
        let _ = write!(
            s,
            "<figure><img src=\"{uri}\" width=\"320\"><figcaption>{} / {} — {} “{}” — Dice {:.3}</figcaption></figure>",
            esc(&c.dataset),
            esc(&c.image),
            esc(&c.prompt_key),
            esc(&c.prompt),
            c.dice
        );
    }
    s.push_str("</body></html>\n");
    Ok(s)
}

/// The worst slices of one volume as figures (nothing when a file cannot be read back).
fn volume_figures(c: &ImageResult, opts: &EvalOptions) -> Result<String> {
    use crate::io::{read_volume, take_slice, DEFAULT_MAX_VOXELS};
    use image::GrayImage;
    let axis = super::VOLUME_AXIS;
    let (Ok(vol), Ok(tgt), Ok(pred)) = (
        read_volume(&c.image_path, DEFAULT_MAX_VOXELS),
        read_volume(&c.mask_path, DEFAULT_MAX_VOXELS),
        read_volume(&opts.out.join(&c.mask_file), DEFAULT_MAX_VOXELS),
    ) else {
        return Ok(String::new());
    };
    if tgt.dims != vol.dims || pred.dims != vol.dims {
        return Ok(String::new());
    }
    let map = crate::volume::volume_window(&vol, crate::io::Windowing::Auto)?;
    let (tm, pm) = (super::volume_mask(&tgt), super::volume_mask(&pred));
    let (w, h, _) = vol.slice_dims(axis);
    let gray = |m: &[u8], k: usize| {
        let v = take_slice(m, vol.dims, axis, k, 1).into_iter().map(|x| x * 255).collect();
        GrayImage::from_raw(w as u32, h as u32, v).expect("slice size")
    };
    let mut s = String::new();
    for &k in &c.worst_slices {
        let img = crate::volume::slice_image(&vol, axis, k, map.as_ref(), false)?;
        let (p, t) = (gray(&pm, k), gray(&tm, k));
        let d = crate::metrics::dice(p.as_raw(), t.as_raw());
        let uri = png_data_uri(DynamicImage::ImageRgb8(case_image(&img, &p, &t, 320)))?;
        let _ = write!(
            s,
            "<figure><img src=\"{uri}\" width=\"320\"><figcaption>{} / {} — {} “{}” — Dice {:.3} (volume), slice {k}: Dice {d:.3}</figcaption></figure>",
            esc(&c.dataset),
            esc(&c.image),
            esc(&c.prompt_key),
            esc(&c.prompt),
            c.dice
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
