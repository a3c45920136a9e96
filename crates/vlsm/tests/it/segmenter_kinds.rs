//! `Segmenter` drives every model kind through one API (load → encode once → decode per
//! prompt), and its split path gives the models' own end-to-end logits.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use vlsm::models::cris::Cris;
use vlsm::pipeline::Segmenter;

use crate::support as common;
use common::rel_err;

fn fx(rel: &str) -> PathBuf {
    crate::support::fx(rel)
}

#[test]
fn biomedclipseg_through_the_segmenter() {
    let dir = fx("biomedclip/tiny");
    let seg = Segmenter::load(&dir).unwrap();
    assert_eq!(seg.kind_name(), "biomedclipseg");
    let img = image::open(fx("clipseg/images/kvasir_75x50.png")).unwrap().to_rgb8();
    let pv = seg.pixel_values(&[&img]).unwrap();
    let f = seg.encode_images(&pv).unwrap();
    let prompts = vec!["polyp".to_string(), "a small tumor".to_string()];
    let cond = seg.text_conditional(&prompts).unwrap();
    let split = seg.decode(&f[0], &cond).unwrap();
    let direct = vlsm::loader::biomedclipseg(&dir, None, DType::F32, &Device::Cpu).unwrap();
    let whole = direct.forward(&pv, &cond).unwrap();
    assert!(rel_err(&split, &whole) < 1e-5);
    assert!(seg.image_conditional(&img, &image::GrayImage::new(75, 50)).is_err());
}

#[test]
fn cris_through_the_segmenter() {
    let dir = fx("cris");
    let seg = Segmenter::load(&dir).unwrap();
    assert_eq!(seg.kind_name(), "cris");
    assert!((seg.default_threshold() - 0.35).abs() < 1e-6);
    let img = image::open(fx("clipseg/images/clinicdb_64.png")).unwrap().to_rgb8();
    let pv = seg.pixel_values(&[&img]).unwrap();
    let f = seg.encode_images(&pv).unwrap();
    // The tiny CRIS has a 100-token vocabulary, so feed ids directly.
    let ids =
        Tensor::new(&[[5u32, 7, 9, 11, 0, 0, 0, 0, 0, 0, 0, 0], [3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], &Device::Cpu)
            .unwrap();
    let split = seg.decode(&f[0], &ids).unwrap();
    let m = vlsm::loader::cris(&dir, DType::F32, &Device::Cpu).unwrap();
    let whole = m.forward(&Tensor::cat(&[&pv, &pv], 0).unwrap(), &ids).unwrap().squeeze(1).unwrap();
    assert!(rel_err(&split, &whole) < 1e-5, "{}", rel_err(&split, &whole));
    let _ = Cris::pad_mask(&ids).unwrap();
}
