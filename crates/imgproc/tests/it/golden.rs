//! Golden tests: results compared with opencv-python 5.1 outputs stored in
//! tests/fixtures/imgproc (written by tools/imgproc_fixtures.py; 8-bit warpAffine with OpenCV's
//! own kernels, IPP off, see that script).
use crate::support as common;
use common::*;
use imgproc::*;
use serde_json::Value;

fn u(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn run_cases(op: &str, mut check: impl FnMut(&Fixtures, &Value) -> Option<String>) {
    let fx = fx();
    let cases = fx.cases(op);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(fx, c).map(|m| format!("{} {} {}: {m}", c["name"], c["input"], c["params"])))
        .collect();
    report(op, failures, cases.len());
}

fn code(s: &str) -> ColorConversion {
    use ColorConversion::*;
    match s {
        "rgb2gray" => Rgb2Gray,
        "bgr2gray" => Bgr2Gray,
        "rgb2lab" => Rgb2Lab,
        "bgr2lab" => Bgr2Lab,
        "lab2rgb" => Lab2Rgb,
        "rgb2hsv" => Rgb2Hsv,
        "bgr2hsv" => Bgr2Hsv,
        "hsv2rgb" => Hsv2Rgb,
        "gray2rgb" => Gray2Rgb,
        other => panic!("code {other}"),
    }
}

#[test]
fn golden_cvt_color_forward_u8() {
    run_cases("cvt_color", |fx, c| {
        let p = &c["params"];
        let cs = p["code"].as_str().unwrap();
        if cs == "lab2rgb" || cs == "hsv2rgb" {
            return None;
        }
        let src = if p["from_gray"] == true { fx.input_gray(c) } else { fx.input(c) };
        let got = to_f64(&cvt_color(&src, code(cs)).unwrap());
        exact("cvt", &got, &fx.expected(c))
    });
}

#[test]
fn golden_cvt_color_inverse_u8() {
    run_cases("cvt_color", |fx, c| {
        let cs = c["params"]["code"].as_str().unwrap();
        if cs != "lab2rgb" && cs != "hsv2rgb" {
            return None;
        }
        let want = match c["params"]["output_avx2"].as_str() {
            // cv2's 8-bit HSV->RGB depends on its SIMD width: the fixtures hold the AVX-512
            // machine's output and the AVX2 one's; ours follows this CPU as OpenCV does.
            Some(avx2) if imgproc::color::hsv2rgb_block_width() != 64 => {
                assert_eq!(imgproc::color::hsv2rgb_block_width(), 32, "no fixture for this SIMD width");
                fx.f64s(avx2)
            }
            _ => fx.expected(c),
        };
        exact("cvt_inv", &to_f64(&cvt_color(&fx.input(c), code(cs)).unwrap()), &want)
    });
}

#[test]
fn golden_cvt_color_f32() {
    run_cases("cvt_color_f32", |fx, c| {
        let src = fx.input(c).map(|v| v as f32 / 255.0);
        let cs = c["params"]["code"].as_str().unwrap();
        let got = to_f64(&cvt_color(&src, code(cs)).unwrap());
        if cs == "rgb2lab" {
            // Same 33^3 table and fixed-point interpolation as OpenCV: the same floats.
            return exact("cvt_lab_f32", &got, &fx.expected(c));
        }
        close("cvt_f32", &got, &fx.expected(c), 1e-4)
    });
}

#[test]
fn golden_lab_f32_table_grid_and_between() {
    // Every grid point of OpenCV's table (each entry shows as it is), then random values
    // between them and outside [0, 1].
    run_cases("cvt_lab_f32_grid", |fx, c| {
        let src = match c["input"].as_str().unwrap() {
            // pixel (33 * r + g, b) is (r, g, b) / 32 (tools/imgproc_fixtures.py)
            "lab_grid" => Image::from_vec(
                33,
                33 * 33,
                3,
                (0..33 * 33 * 33).flat_map(|i| [i / (33 * 33), i / 33 % 33, i % 33].map(|v| v as f32 / 32.0)).collect(),
            )
            .unwrap(),
            name => fx.image_f32(&format!("in_{name}")),
        };
        let got = to_f64(&cvt_color(&src, code(c["params"]["code"].as_str().unwrap())).unwrap());
        exact("lab_f32_grid", &got, &fx.expected(c))
    });
}

fn ttype(s: &str) -> ThresholdType {
    match s {
        "binary" => ThresholdType::Binary,
        "binary_inv" => ThresholdType::BinaryInv,
        "trunc" => ThresholdType::Trunc,
        "tozero" => ThresholdType::ToZero,
        _ => ThresholdType::ToZeroInv,
    }
}

#[test]
fn golden_threshold_incl_otsu_triangle() {
    run_cases("threshold", |fx, c| {
        let p = &c["params"];
        let method = match p["auto"].as_str() {
            Some("otsu") => threshold::ThresholdMethod::Otsu,
            Some("triangle") => threshold::ThresholdMethod::Triangle,
            _ => threshold::ThresholdMethod::Fixed,
        };
        let (t, img) =
            threshold(&fx.input_gray(c), f(&p["thresh"]), f(&p["maxval"]), ttype(p["type"].as_str().unwrap()), method)
                .unwrap();
        if t != f(&p["expect_value"]) {
            return Some(format!("threshold value {t} != {}", p["expect_value"]));
        }
        exact("threshold", &to_f64(&img), &fx.expected(c))
    });
    run_cases("threshold_f32", |fx, c| {
        let p = &c["params"];
        let src = fx.image_f32("in_kvf");
        let (_, img) =
            threshold(&src, f(&p["thresh"]), f(&p["maxval"]), ttype(p["type"].as_str().unwrap()), Default::default())
                .unwrap();
        close("threshold_f32", &to_f64(&img), &fx.expected(c), 1e-6)
    });
}

#[test]
fn golden_adaptive_threshold() {
    run_cases("adaptive", |fx, c| {
        let p = &c["params"];
        let m = if p["method"] == "mean" { AdaptiveMethod::Mean } else { AdaptiveMethod::Gaussian };
        let img = adaptive_threshold(
            &fx.input_gray(c),
            f(&p["maxval"]),
            m,
            ttype(p["type"].as_str().unwrap()),
            u(&p["block"]),
            f(&p["c"]),
        )
        .unwrap();
        exact("adaptive", &to_f64(&img), &fx.expected(c))
    });
}

fn interp(s: &str) -> Interpolation {
    match s {
        "nearest" => Interpolation::Nearest,
        "linear" => Interpolation::Linear,
        "cubic" => Interpolation::Cubic,
        _ => Interpolation::Area,
    }
}

fn resize_check(interp_name: &'static str) -> impl FnMut(&Fixtures, &Value) -> Option<String> {
    move |fx, c| {
        let p = &c["params"];
        if p["interp"] != interp_name {
            return None;
        }
        let img = resize(&fx.input_src(c), (u(&p["width"]), u(&p["height"])), interp(interp_name)).unwrap();
        if interp_name != "cubic" {
            return exact("resize", &to_f64(&img), &fx.expected(c));
        }
        // Known deviation: OpenCV hands 8-bit bicubic with 1, 3 or 4 channels to IPP, whose
        // float rounding leaves some values 1 off.
        near("resize", &to_f64(&img), &fx.expected(c), 1.0, 0.25)
    }
}

#[test]
fn golden_resize_nearest() {
    run_cases("resize", resize_check("nearest"));
}
#[test]
fn golden_resize_linear() {
    run_cases("resize", resize_check("linear"));
}
#[test]
fn golden_resize_cubic() {
    run_cases("resize", resize_check("cubic"));
}
#[test]
fn golden_resize_area() {
    run_cases("resize", resize_check("area"));
}

#[test]
fn golden_resize_f32() {
    run_cases("resize_f32", |fx, c| {
        let p = &c["params"];
        let src = fx.input(c).map(|v| v as f32 / 7.0);
        let img = resize(&src, (u(&p["width"]), u(&p["height"])), interp(p["interp"].as_str().unwrap())).unwrap();
        close("resize_f32", &to_f64(&img), &fx.expected(c), 1e-3)
    });
}

#[test]
fn golden_rotation_matrix() {
    run_cases("rotation_matrix", |fx, c| {
        let p = &c["params"];
        let m = get_rotation_matrix_2d((f(&p["cx"]), f(&p["cy"])), f(&p["angle"]), f(&p["scale"]));
        close("rot", &m, &fx.expected(c), 1e-12)
    });
}

fn warp_check(interp_name: &'static str) -> impl FnMut(&Fixtures, &Value) -> Option<String> {
    move |fx, c| {
        let p = &c["params"];
        if p["interp"] != interp_name {
            return None;
        }
        let m: Vec<f64> = p["m"].as_array().unwrap().iter().map(f).collect();
        let m: [f64; 6] = m.try_into().unwrap();
        let img = warp_affine(
            &fx.input_src(c),
            &m,
            (u(&p["width"]), u(&p["height"])),
            interp(interp_name),
            border(&p["border"]),
            0.0,
        )
        .unwrap();
        match interp_name {
            "linear" | "nearest" => exact("warp", &to_f64(&img), &fx.expected(c)),
            // Known deviation: OpenCV 5's float bicubic; 3 pixels of one of the 76 cubic cases
            // are 1 off (docs/imgproc.md).
            _ => near("warp", &to_f64(&img), &fx.expected(c), 2.0, 0.10),
        }
    }
}

#[test]
fn golden_warp_affine_linear() {
    run_cases("warp_affine", warp_check("linear"));
}
#[test]
fn golden_warp_affine_nearest() {
    run_cases("warp_affine", warp_check("nearest"));
}
#[test]
fn golden_warp_affine_cubic() {
    run_cases("warp_affine", warp_check("cubic"));
}

#[test]
fn golden_gaussian_kernel() {
    run_cases("gaussian_kernel", |fx, c| {
        let p = &c["params"];
        close("kernel", &get_gaussian_kernel(u(&p["ksize"]), f(&p["sigma"])).unwrap(), &fx.expected(c), 1e-12)
    });
}

#[test]
fn golden_blur() {
    run_cases("blur", |fx, c| {
        let p = &c["params"];
        let img = blur(&fx.input_src(c), (u(&p["kw"]), u(&p["kh"])), border(&p["border"])).unwrap();
        exact("blur", &to_f64(&img), &fx.expected(c))
    });
}

#[test]
fn golden_gaussian_blur() {
    run_cases("gaussian", |fx, c| {
        let p = &c["params"];
        let img =
            gaussian_blur(&fx.input_src(c), (u(&p["kw"]), u(&p["kh"])), f(&p["sx"]), f(&p["sy"]), border(&p["border"]))
                .unwrap();
        exact("gaussian", &to_f64(&img), &fx.expected(c))
    });
}

#[test]
fn golden_median_blur() {
    run_cases("median", |fx, c| {
        let img = median_blur(&fx.input_src(c), u(&c["params"]["ksize"])).unwrap();
        exact("median", &to_f64(&img), &fx.expected(c))
    });
}

#[test]
fn golden_filter_2d() {
    run_cases("filter_2d", |fx, c| {
        let p = &c["params"];
        let k: Vec<f32> = p["kernel"].as_array().unwrap().iter().map(|v| f(v) as f32).collect();
        let img = filter_2d(&fx.input_src(c), &k, u(&p["kw"]), u(&p["kh"]), 0.0, BorderType::Reflect101).unwrap();
        exact("filter_2d", &to_f64(&img), &fx.expected(c))
    });
}

#[test]
fn golden_sobel_scharr_laplacian() {
    run_cases("sobel", |fx, c| {
        let p = &c["params"];
        let img = sobel(&fx.input_gray(c), u(&p["dx"]), u(&p["dy"]), u(&p["ksize"]), BorderType::Reflect101).unwrap();
        exact("sobel", &to_f64(&img), &fx.expected(c))
    });
    run_cases("sobel_abs", |fx, c| {
        let p = &c["params"];
        let img = sobel(&fx.input_gray(c), u(&p["dx"]), u(&p["dy"]), u(&p["ksize"]), BorderType::Reflect101).unwrap();
        exact("sobel_abs", &to_f64(&convert_scale_abs(&img, 1.0, 0.0).unwrap()), &fx.expected(c))
    });
    run_cases("sobel_f32", |fx, c| {
        let img = edges::sobel_f32(&fx.input_gray(c), 1, 0, 3, 0.25, BorderType::Reflect101).unwrap();
        close("sobel_f32", &to_f64(&img), &fx.expected(c), 1e-4)
    });
    run_cases("scharr", |fx, c| {
        let p = &c["params"];
        exact(
            "scharr",
            &to_f64(&scharr(&fx.input_gray(c), u(&p["dx"]), u(&p["dy"]), BorderType::Reflect101).unwrap()),
            &fx.expected(c),
        )
    });
    run_cases("laplacian", |fx, c| {
        exact(
            "laplacian",
            &to_f64(&laplacian(&fx.input_gray(c), u(&c["params"]["ksize"]), BorderType::Reflect101).unwrap()),
            &fx.expected(c),
        )
    });
}

fn shape(s: &str) -> MorphShape {
    match s {
        "rect" => MorphShape::Rect,
        "cross" => MorphShape::Cross,
        _ => MorphShape::Ellipse,
    }
}

#[test]
fn golden_structuring_elements() {
    run_cases("structuring_element", |fx, c| {
        let p = &c["params"];
        let k = get_structuring_element(shape(p["shape"].as_str().unwrap()), (u(&p["kw"]), u(&p["kh"]))).unwrap();
        exact("kernel", &to_f64(&k), &fx.expected(c))
    });
}

#[test]
fn golden_morphology() {
    run_cases("morph", |fx, c| {
        let p = &c["params"];
        let op = match p["op"].as_str().unwrap() {
            "erode" => MorphOp::Erode,
            "dilate" => MorphOp::Dilate,
            "open" => MorphOp::Open,
            "close" => MorphOp::Close,
            "gradient" => MorphOp::Gradient,
            "tophat" => MorphOp::TopHat,
            _ => MorphOp::BlackHat,
        };
        let k = get_structuring_element(shape(p["shape"].as_str().unwrap()), (u(&p["ksize"]), u(&p["ksize"]))).unwrap();
        let img = morphology_ex(&fx.input_src(c), op, &k, u(&p["iterations"])).unwrap();
        exact("morph", &to_f64(&img), &fx.expected(c))
    });
}

#[test]
fn golden_canny() {
    run_cases("canny", |fx, c| {
        let p = &c["params"];
        let img = canny(&fx.input_gray(c), f(&p["low"]), f(&p["high"]), u(&p["aperture"]), p["l2"] == true).unwrap();
        exact("canny", &to_f64(&img), &fx.expected(c))
    });
}

#[test]
fn golden_harris_and_min_eigen() {
    run_cases("harris", |fx, c| {
        let p = &c["params"];
        let img = corner_harris(&fx.input_gray(c), u(&p["block"]), u(&p["ksize"]), f(&p["k"]), BorderType::Reflect101)
            .unwrap();
        close("harris", &to_f64(&img), &fx.expected(c), 1e-3)
    });
    run_cases("min_eigen", |fx, c| {
        let img = corner_min_eigen_val(&fx.input_gray(c), 3, 3, BorderType::Reflect101).unwrap();
        close("min_eigen", &to_f64(&img), &fx.expected(c), 1e-4)
    });
}

#[test]
fn golden_good_features_to_track() {
    run_cases("good_features", |fx, c| {
        let pts = good_features_to_track(&fx.input_gray(c), 50, 0.01, 3.0).unwrap();
        let want = fx.expected(c);
        let want: Vec<(f64, f64)> = want.chunks(2).map(|p| (p[0], p[1])).collect();
        let found = want.iter().filter(|w| pts.iter().any(|p| p.0 as f64 == w.0 && p.1 as f64 == w.1)).count();
        // Ties between equal responses may be broken differently; require 90% agreement.
        (found * 10 < want.len() * 9 || pts.len() != want.len())
            .then(|| format!("{found} of {} corners match ({} found)", want.len(), pts.len()))
    });
}

#[test]
fn golden_histograms_and_point_ops() {
    run_cases("equalize_hist", |fx, c| {
        exact("eq", &to_f64(&equalize_hist(&fx.input_gray(c)).unwrap()), &fx.expected(c))
    });
    run_cases("calc_hist", |fx, c| {
        let h: Vec<f64> = calc_hist(&fx.input_gray(c), 0).unwrap().iter().map(|&v| v as f64).collect();
        exact("hist", &h, &fx.expected(c))
    });
    run_cases("convert_scale_abs", |fx, c| {
        let p = &c["params"];
        near(
            "csa",
            &to_f64(&convert_scale_abs(&fx.input(c), f(&p["alpha"]), f(&p["beta"])).unwrap()),
            &fx.expected(c),
            1.0,
            0.05,
        )
    });
    run_cases("lut", |fx, c| {
        let mut t = [0u8; 256];
        for (i, v) in t.iter_mut().enumerate() {
            *v = (255 - i / 2) as u8;
        }
        exact("lut", &to_f64(&lut(&fx.input(c), &t).unwrap()), &fx.expected(c))
    });
}

#[test]
fn golden_connected_components() {
    run_cases("components", |fx, c| {
        let p = &c["params"];
        let g = fx.input_gray(c);
        let (_, b) = threshold(&g, 0.0, 255.0, ThresholdType::Binary, threshold::ThresholdMethod::Otsu).unwrap();
        let cc = connected_components_with_stats(&b, u(&p["connectivity"]) as u8).unwrap();
        let stats: Vec<f64> = cc.stats.iter().flat_map(|s| s.iter().map(|&v| v as f64)).collect();
        let name = c["name"].as_str().unwrap();
        let suffix = &name[name.len() - 4..];
        exact("stats", &stats, &fx.expected(c))
            .or_else(|| exact("labels", &to_f64(&cc.labels), &fx.f64s(&format!("cc_lab_{suffix}"))))
            .or_else(|| {
                let cen: Vec<f64> = cc.centroids.iter().skip(1).flat_map(|&(x, y)| [x, y]).collect();
                let want: Vec<f64> = fx.f64s(&format!("cc_cen_{suffix}")).into_iter().skip(2).collect();
                close("centroids", &cen, &want, 1e-9)
            })
    });
}

#[test]
fn golden_kmeans_inertia_within_2pct() {
    run_cases("kmeans", |fx, c| {
        let p = &c["params"];
        let img = fx.input(c);
        let data: Vec<f32> = img.data().iter().map(|&v| v as f32).collect();
        let r = kmeans(&data, 3, u(&p["k"]), 100, 0.01, 5, 1).unwrap();
        let want = f(&p["expect_inertia"]);
        (r.compactness > want * 1.02).then(|| format!("inertia {} vs OpenCV {want}", r.compactness))
    });
}
