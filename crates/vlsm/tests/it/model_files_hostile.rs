//! Values in model files that cannot be right are refused with one line naming the file and the
//! key (#17, items 6 and 22): a zero std, a huge processor size, a threshold outside 0..1. (A
//! `groups` that does not divide the channels is not among them: each block uses the largest
//! divisor at most `groups`, by design.)

use std::path::Path;

use vlsm::models::textunet::TextUNetConfig;
use vlsm::models::unet::UNetConfig;
use vlsm::pipeline::Segmenter;
use vlsm::preprocess::ImageProcessorConfig;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn processor_values_that_cannot_be_right() {
    for (json, key) in [
        (r#"{"image_std": [0, 0, 0]}"#, "image_std"),
        (r#"{"image_std": [0.5, -1, 0.5]}"#, "image_std"),
        (r#"{"rescale_factor": 0}"#, "rescale_factor"),
        (r#"{"size": 100000}"#, "size"),
        (r#"{"size": {"height": 0, "width": 224}}"#, "size"),
        (r#"{"crop_size": 100000}"#, "crop_size"),
    ] {
        let e = ImageProcessorConfig::from_json_str(json).unwrap_err().to_string();
        assert!(e.contains(key) && !e.contains('\n'), "{json}: {e}");
    }
    assert!(ImageProcessorConfig::from_json_str(r#"{"size": 352, "image_std": [0.26, 0.26, 0.27]}"#).is_ok());
}

/// The model whose processor says size 100000 aborted `segment` and killed `serve`.
#[test]
fn a_huge_processor_size_fails_the_load_not_the_process() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clipseg/tiny_complex");
    let d = tempfile::tempdir().unwrap();
    copy_dir(&fixtures, d.path());
    let pp = d.path().join("preprocessor_config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&pp).unwrap()).unwrap();
    v["size"] = serde_json::json!(100000);
    std::fs::write(&pp, v.to_string()).unwrap();
    let e = format!("{:#}", Segmenter::load(d.path()).err().expect("a processor of size 100000 loads"));
    assert!(e.contains("preprocessor_config.json") && e.contains("size: 100000"), "{e}");
}

#[test]
fn unet_configs_with_impossible_values() {
    let base = serde_json::json!({"model_type": "unet", "image_size": 64, "channels": [8, 16], "groups": 4});
    let parse = |v: &serde_json::Value| serde_json::from_value::<UNetConfig>(v.clone()).unwrap();
    parse(&base).validate().unwrap();
    for (key, value, want) in
        [("threshold", serde_json::json!(2.0), "threshold 2"), ("threshold", serde_json::json!(-0.5), "threshold -0.5")]
    {
        let mut v = base.clone();
        v[key] = value;
        let e = parse(&v).validate().unwrap_err();
        assert!(e.contains(want), "{key}: {e}");
    }
    let t: TextUNetConfig =
        serde_json::from_value(serde_json::json!({"model_type": "textunet", "threshold": 1.5})).unwrap();
    assert!(t.validate().unwrap_err().contains("threshold 1.5"));
}
