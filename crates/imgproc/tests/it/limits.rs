//! Limits on output sizes and kernel sizes: hostile arguments fail fast with an error (#17).

use std::time::{Duration, Instant};

use imgproc::*;

fn img() -> Image<u8> {
    Image::from_fn(384, 288, 1, |x, y, _| ((x * 7 + y * 3) % 256) as u8).unwrap()
}

fn fast<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Error {
    let t = Instant::now();
    let e = match f() {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => e,
    };
    assert!(t.elapsed() < Duration::from_secs(2), "{what} took {:?}", t.elapsed());
    assert!(e.to_string().contains("limit"), "{what}: {e}");
    e
}

#[test]
fn huge_outputs_are_refused() {
    let im = img();
    fast("resize", || resize(&im, (100_000, 100_000), Interpolation::Linear));
    fast("resize overflow", || resize(&im, (usize::MAX, 3), Interpolation::Nearest));
    let m = get_rotation_matrix_2d((0.0, 0.0), 0.0, 1.0);
    fast("warp_affine", || warp_affine(&im, &m, (20_000, 20_000), Interpolation::Linear, BorderType::Constant, 0.0));
    assert!(resize(&im, (1000, 1000), Interpolation::Linear).is_ok());
}

#[test]
fn huge_kernels_are_refused() {
    let im = img();
    let k = 10_001;
    fast("gaussian from sigma", || gaussian_blur(&im, (0, 0), 1e12, 0.0, BorderType::Reflect101));
    fast("gaussian", || gaussian_blur(&im, (k, k), 0.0, 0.0, BorderType::Reflect101));
    fast("gaussian kernel", || get_gaussian_kernel(k, 0.0));
    fast("blur", || blur(&im, (k, k), BorderType::Reflect101));
    fast("box_filter", || box_filter(&im, (k, 1), true, BorderType::Reflect101));
    fast("median", || median_blur(&im, k));
    fast("structuring element", || get_structuring_element(MorphShape::Ellipse, (k, k)));
    fast("adaptive", || adaptive_threshold(&im, 255.0, AdaptiveMethod::Mean, ThresholdType::Binary, k, 2.0));
    fast("harris block", || corner_harris(&im, k, 3, 0.04, BorderType::Reflect101));
    // A kernel built by hand is checked where it is used.
    let big = Image::<u8>::filled(1, 300, 1, 1).unwrap();
    fast("erode", || erode(&im, &big, 1));
    fast("morphology_ex", || morphology_ex(&im, MorphOp::Open, &big, 1));
}

#[test]
fn the_largest_kernel_allowed_works() {
    // Small, so that the debug build stays quick.
    let im = Image::from_fn(40, 30, 1, |x, y, _| ((x * 7 + y * 3) % 256) as u8).unwrap();
    let k = MAX_KERNEL_SIZE;
    assert!(blur(&im, (k, k), BorderType::Reflect101).is_ok());
    assert!(median_blur(&im, k).is_ok());
    assert!(gaussian_blur(&im, (k, k), 0.0, 0.0, BorderType::Reflect101).is_ok());
    let e = get_structuring_element(MorphShape::Ellipse, (k, k)).unwrap();
    assert!(erode(&im, &e, 1).is_ok());
    assert!(adaptive_threshold(&im, 255.0, AdaptiveMethod::Gaussian, ThresholdType::Binary, k, 2.0).is_ok());
}

#[test]
fn sobel_ksize_message_is_accurate() {
    let e = sobel(&img(), 1, 0, 2, BorderType::Reflect101).unwrap_err().to_string();
    assert!(e.contains("odd") && e.contains("31") && !e.contains("1, 3, 5 or 7"), "{e}");
}
