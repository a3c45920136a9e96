//! Bad inputs give errors (never panics); morphology invariants hold on random images.
use imgproc::*;
use proptest::prelude::*;

fn img(w: usize, h: usize, cn: usize) -> Image<u8> {
    Image::from_fn(w, h, cn, |x, y, c| ((x * 31 + y * 17 + c * 7) % 256) as u8).unwrap()
}

#[test]
fn bad_inputs_are_errors() {
    let empty = Image::<u8>::new(0, 5, 1).unwrap();
    let g = img(8, 6, 1);
    let rgb = img(8, 6, 3);
    assert!(Image::<u8>::new(4, 4, 5).is_err());
    assert!(Image::<u8>::from_vec(2, 2, 1, vec![0; 3]).is_err());
    assert!(cvt_color(&empty, ColorConversion::Rgb2Gray).is_err());
    assert!(cvt_color(&g, ColorConversion::Rgb2Lab).is_err());
    assert!(blur(&empty, (3, 3), BorderType::Reflect101).is_err());
    assert!(blur(&g, (0, 3), BorderType::Reflect101).is_err());
    assert!(gaussian_blur(&g, (4, 4), 0.0, 0.0, BorderType::Reflect101).is_err());
    assert!(gaussian_blur(&g, (0, 0), 0.0, 0.0, BorderType::Reflect101).is_err());
    assert!(median_blur(&g, 4).is_err());
    assert!(median_blur(&g, 1).is_err());
    assert!(median_blur(&g.to_f32(), 7).is_err());
    assert!(adaptive_threshold(&g, 255.0, AdaptiveMethod::Mean, ThresholdType::Binary, 4, 2.0).is_err());
    assert!(adaptive_threshold(&g, 255.0, AdaptiveMethod::Mean, ThresholdType::Binary, 1, 2.0).is_err());
    assert!(adaptive_threshold(&rgb, 255.0, AdaptiveMethod::Mean, ThresholdType::Binary, 3, 2.0).is_err());
    assert!(threshold(&rgb, 0.0, 255.0, ThresholdType::Binary, threshold::ThresholdMethod::Otsu).is_err());
    assert!(threshold(&g, f64::NAN, 255.0, ThresholdType::Binary, Default::default()).is_err());
    assert!(resize(&g, (0, 3), Interpolation::Linear).is_err());
    assert!(warp_affine(&g, &[0.0; 6], (8, 6), Interpolation::Linear, BorderType::Constant, 0.0).is_err());
    assert!(sobel(&g, 0, 0, 3, BorderType::Reflect101).is_err());
    assert!(sobel(&g, 1, 0, 4, BorderType::Reflect101).is_err());
    assert!(canny(&rgb, 10.0, 20.0, 3, false).is_err());
    assert!(canny(&g, 10.0, 20.0, 4, false).is_err());
    assert!(corner_harris(&g, 0, 3, 0.04, BorderType::Reflect101).is_err());
    assert!(kmeans(&[1.0, 2.0], 1, 3, 10, 0.1, 1, 0).is_err());
    assert!(kmeans(&[1.0, f32::NAN], 1, 1, 10, 0.1, 1, 0).is_err());
    let mut nan = Image::<f32>::new(4, 4, 1).unwrap();
    nan.set(1, 1, 0, f32::NAN);
    assert!(matches!(gaussian_blur(&nan, (3, 3), 0.0, 0.0, BorderType::Reflect101), Err(Error::NaN { .. })));
    assert!(resize(&nan, (2, 2), Interpolation::Area).is_err());
    assert!(get_structuring_element(MorphShape::Rect, (0, 3)).is_err());
    assert!(equalize_hist(&rgb).is_err());
    assert!(connected_components_with_stats(&g, 6).is_err());
}

#[test]
fn split_merge_separates_flat_regions() {
    let mut im = Image::<u8>::new(32, 32, 1).unwrap();
    rectangle(&mut im, (8, 8), (23, 23), &[200], -1).unwrap();
    let labels = split_merge(&im, 10.0, 2, 5.0).unwrap();
    let (a, b) = (labels.get(0, 0, 0).unwrap(), labels.get(15, 15, 0).unwrap());
    assert_ne!(a, b);
    assert_eq!(labels.get(31, 31, 0).unwrap(), a);
    assert_eq!(labels.data().iter().max().copied(), Some(1));
}

fn arb_image() -> impl Strategy<Value = Image<u8>> {
    (1usize..24, 1usize..24).prop_flat_map(|(w, h)| {
        proptest::collection::vec(any::<u8>(), w * h).prop_map(move |d| Image::from_vec(w, h, 1, d).unwrap())
    })
}

fn arb_kernel() -> impl Strategy<Value = Image<u8>> {
    (prop_oneof![Just(MorphShape::Rect), Just(MorphShape::Ellipse), Just(MorphShape::Cross)], 1usize..4, 1usize..4)
        .prop_map(|(s, a, b)| get_structuring_element(s, (2 * a + 1, 2 * b + 1)).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn erode_le_input_le_dilate(im in arb_image(), k in arb_kernel()) {
        let e = erode(&im, &k, 1).unwrap();
        let d = dilate(&im, &k, 1).unwrap();
        for i in 0..im.data().len() {
            prop_assert!(e.data()[i] <= im.data()[i] && im.data()[i] <= d.data()[i]);
        }
    }

    #[test]
    fn open_and_close_are_idempotent(im in arb_image(), k in arb_kernel()) {
        let o = morphology_ex(&im, MorphOp::Open, &k, 1).unwrap();
        prop_assert_eq!(&morphology_ex(&o, MorphOp::Open, &k, 1).unwrap(), &o);
        let c = morphology_ex(&im, MorphOp::Close, &k, 1).unwrap();
        prop_assert_eq!(&morphology_ex(&c, MorphOp::Close, &k, 1).unwrap(), &c);
    }

    #[test]
    fn filters_never_panic_on_small_images(im in arb_image(), k in 1usize..6) {
        let ks = 2 * k + 1;
        prop_assert!(gaussian_blur(&im, (ks, ks), 0.0, 0.0, BorderType::Reflect101).is_ok());
        prop_assert!(median_blur(&im, ks).is_ok());
        prop_assert!(blur(&im, (ks, ks), BorderType::Constant).is_ok());
        prop_assert!(canny(&im, 20.0, 60.0, 3, true).is_ok());
    }
}

/// Three well-separated 2-D blobs, 40 samples each, in order.
fn three_blobs() -> Vec<f32> {
    let centres = [(10.0f32, 10.0f32), (200.0, 40.0), (90.0, 220.0)];
    let mut state = 3u64;
    let mut noise = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 20.0
    };
    centres.iter().flat_map(|&(x, y)| (0..40).flat_map(|_| [x + noise(), y + noise()]).collect::<Vec<_>>()).collect()
}

#[test]
fn kmeans_with_initial_labels_random_and_pp_find_the_blobs() {
    let data = three_blobs();
    // Initial labels: the true ones with every fifth sample moved to the next cluster.
    let labels: Vec<usize> = (0..120).map(|i| (i / 40 + usize::from(i % 5 == 0)) % 3).collect();
    let truth: Vec<usize> = (0..120).map(|i| i / 40).collect();
    let r = kmeans_with(&data, 2, 3, KmeansInit::Labels(labels), 100, 1e-4, 1, 0).unwrap();
    assert_eq!(r.labels, truth, "cluster j keeps the samples initially labelled j");
    let best = r.compactness;
    for init in [KmeansInit::Random, KmeansInit::PlusPlus] {
        let r = kmeans_with(&data, 2, 3, init.clone(), 100, 1e-4, 5, 7).unwrap();
        assert!((r.compactness - best).abs() <= 1e-6 * best, "{init:?}: {} vs {best}", r.compactness);
        // The same partition, whatever the cluster numbers.
        for i in 0..120 {
            for j in 0..120 {
                assert_eq!(r.labels[i] == r.labels[j], truth[i] == truth[j]);
            }
        }
    }
    // Bad initial labels are errors, not panics.
    assert!(kmeans_with(&data, 2, 3, KmeansInit::Labels(vec![0; 119]), 10, 0.1, 1, 0).is_err());
    assert!(kmeans_with(&data, 2, 3, KmeansInit::Labels(vec![3; 120]), 10, 0.1, 1, 0).is_err());
}
