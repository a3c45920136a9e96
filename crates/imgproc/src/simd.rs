//! Function multiversioning: hot row kernels are compiled three times, with AVX-512 (F, BW, DQ,
//! VL, CD), with AVX2 and FMA (picked at run time) and with the baseline target features, so the
//! crate needs no `-C target-cpu`. Only the instruction selection differs: the compiler never
//! reassociates float arithmetic, so all three compute the same values.

/// Defines a non-generic `fn` whose body is also compiled with AVX-512 and with AVX2 enabled, the
/// widest the CPU has being used. Generic `#[inline(always)]` helpers called from the body inherit the features.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? $body
                if $crate::simd::has_avx512() {
                    // SAFETY: the CPU supports these AVX-512 subsets, AVX2 and FMA (checked).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// Whether the CPU has the AVX-512 subsets the third version of [`multiversion`] is built for
/// (OpenCV's AVX512_SKX set), and AVX2 and FMA. `IMGPROC_NO_AVX512=1` turns that version off (to
/// compare the two, e.g. in benchmarks).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        use std::arch::is_x86_feature_detected as has;
        std::env::var_os("IMGPROC_NO_AVX512").is_none_or(|v| v != "1")
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512dq")
            && has!("avx512vl")
            && has!("avx512cd")
            && has!("avx2")
            && has!("fma")
    })
}

/// Calls `step(x)` for each whole block of `width` values from 0, then once more at `n - width`
/// for a remainder: the last block overlaps the previous one, so `step` must write only what
/// it reads from inputs it does not write (callers need `n >= width`).
#[inline(always)]
pub(crate) fn overlapping_blocks(n: usize, width: usize, mut step: impl FnMut(usize)) {
    let mut x = 0;
    while x + width <= n {
        step(x);
        x += width;
    }
    if x < n {
        step(n - width);
    }
}
