//! Runtime CPU-feature dispatch, the crate's only one: hot loops are compiled twice, for the
//! baseline target and with AVX2 and FMA, and the copy the CPU can run is picked when called,
//! so the crate needs no `-C target-cpu`. Hand-written intrinsics live in `mod x86` of the
//! module that uses them and are called only after [`avx2_fma`] said yes.

/// Whether the CPU has AVX2 and FMA (std caches the answer).
#[inline]
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a non-generic `fn` whose body is also compiled with AVX2 and FMA enabled and used
/// when [`avx2_fma`] says the CPU has them. `#[inline(always)]` helpers called from the body
/// inherit the features, so plain loops written to vectorise do so with 8 lanes.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? $body
                if $crate::simd::avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA, the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;
