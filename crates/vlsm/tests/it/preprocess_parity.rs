//! pixel_values within 1e-5 of transformers' PIL image processors, PIL resize bit-exact, and
//! the visual prompt engineering within ±1 of the fixture (tools/make_clipseg_fixtures.py).

use candle_core::{Device, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use vlsm::preprocess::{pil_resize_raw, visual_prompt, Filter, ImageProcessorConfig};

fn fixtures() -> PathBuf {
    crate::support::fx("clipseg")
}
fn cases() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap()
}
fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}
fn rgb(rel: &str) -> image::RgbImage {
    image::open(fixtures().join(rel)).unwrap().to_rgb8()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn pixel_values_match_reference() {
    let r = reference();
    let mut n = 0;
    for c in cases()["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let cfg = ImageProcessorConfig::from_file(fixtures().join(c["processor_config"].as_str().unwrap())).unwrap();
        let img = rgb(c["image"].as_str().unwrap());
        let b = c["prompts"].as_array().unwrap().len().max(1);
        let pv = cfg.preprocess_batch(&vec![img; b]).unwrap();
        let d = max_abs_diff(&pv, &r[&format!("{name}.pixel_values")]);
        assert!(d <= 1e-5, "{name}: pixel_values differ by {d}");
        if let Some(p) = c.get("prompt_image").and_then(Value::as_str) {
            let cpv = cfg.preprocess(&rgb(p)).unwrap();
            let d = max_abs_diff(&cpv, &r[&format!("{name}.conditional_pixel_values")]);
            assert!(d <= 1e-5, "{name}: conditional_pixel_values differ by {d}");
        }
        n += 1;
    }
    assert!(n >= 8);
}

#[test]
fn pil_resize_is_bit_exact() {
    let r = reference();
    let list = cases()["pil_resize"].as_array().unwrap().clone();
    assert!(list.len() >= 60);
    let mut bad = vec![];
    for e in &list {
        let key = e["key"].as_str().unwrap();
        let img = image::open(fixtures().join(e["image"].as_str().unwrap())).unwrap();
        let (data, w, h, ch) = if e["mode"] == "L" {
            let g = img.to_luma8();
            (g.as_raw().clone(), g.width(), g.height(), 1)
        } else {
            let g = img.to_rgb8();
            (g.as_raw().clone(), g.width(), g.height(), 3)
        };
        let (ow, oh) = (e["width"].as_u64().unwrap() as usize, e["height"].as_u64().unwrap() as usize);
        let f = Filter::from_pil(e["filter"].as_i64().unwrap()).unwrap();
        let got = pil_resize_raw(&data, w as usize, h as usize, ch, ow, oh, f);
        let want: Vec<u8> = r[key].flatten_all().unwrap().to_vec1::<u8>().unwrap();
        if got != want {
            let nd = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            bad.push(format!("{key}: {nd} of {} values differ", want.len()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn visual_prompt_matches_fixture_png() {
    for c in cases()["cases"].as_array().unwrap() {
        let Some(p) = c.get("prompt_image").and_then(Value::as_str) else {
            continue;
        };
        let src = rgb(c["prompt_source_image"].as_str().unwrap());
        let mask = image::open(fixtures().join(c["prompt_mask"].as_str().unwrap())).unwrap().to_luma8();
        let got = visual_prompt(&src, &mask).unwrap();
        let want = rgb(p);
        assert_eq!(got.dimensions(), want.dimensions(), "{p}");
        let worst = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        assert!(worst <= 1, "{p}: max difference {worst}");
    }
    let img = image::RgbImage::new(8, 8);
    assert!(visual_prompt(&img, &image::GrayImage::new(8, 8)).is_err());
    assert!(visual_prompt(&img, &image::GrayImage::new(4, 8)).is_err());
}

#[test]
fn config_errors_name_the_file() {
    let p = fixtures().join("no_such_preprocessor_config.json");
    let e = ImageProcessorConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("no_such_preprocessor_config.json"), "{e}");
    let d = std::env::temp_dir().join(format!("vlsm-pp-{}.json", std::process::id()));
    std::fs::write(&d, r#"{"size": "big"}"#).unwrap();
    let e = ImageProcessorConfig::from_file(&d).unwrap_err().to_string();
    assert!(e.contains(&d.display().to_string()) && e.contains("size"), "{e}");
    let _ = std::fs::remove_file(&d);
}
