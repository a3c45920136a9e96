//! Function multiversioning: hot row kernels are compiled twice, with AVX2 and FMA (picked at run time)
//! and with the baseline target features, so the crate needs no `-C target-cpu`.

/// Defines a non-generic `fn` whose body is also compiled with AVX2 enabled and used when the
/// CPU has it. Generic `#[inline(always)]` helpers called from the body inherit the features.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? $body
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
