//! 8-bit bilinear `cv::warpAffine` with 2 channels: OpenCV 5's new warp kernels cover 1, 3 and
//! 4 channels only, so this goes through its older `remap` with sub-pixel tables: coordinates
//! in 1/32 pixel from 10-bit `adelta`/`bdelta` steps (`>> 5`), 15-bit integer weights, integer
//! sums. (Bicubic warps in OpenCV 5 take float coordinates and weights instead, see geometry.rs.)
use std::sync::OnceLock;

use crate::image::Image;
use crate::parallel::par_rows;

const INTER_BITS: u32 = 5;
const TAB: usize = 1 << INTER_BITS;
const AB_BITS: u32 = 10;
const ONE: i32 = 1 << 15;

/// `initInterTab2D(INTER_LINEAR, fixpt=true)`: per sub-pixel position `fy * 32 + fx`, the 2x2
/// weights `(1-fy, fy) x (1-fx, fx)` in 2^-15. They are multiples of 2^-10, so they round
/// exactly and sum to 2^15 (OpenCV's sum correction never fires for this table).
fn table() -> &'static [i16] {
    static T: OnceLock<Vec<i16>> = OnceLock::new();
    T.get_or_init(|| {
        let scale = 1f32 / TAB as f32;
        let one_d: Vec<[f32; 2]> = (0..TAB).map(|i| [1.0 - i as f32 * scale, i as f32 * scale]).collect();
        let mut out = Vec::with_capacity(TAB * TAB * 4);
        for wy in &one_d {
            for wx in &one_d {
                out.extend((0..4).map(|n| (wy[n / 2] * wx[n % 2] * ONE as f32).round_ties_even() as i16));
            }
        }
        out
    })
}

/// Warps `src` by the inverse matrix `inv` (destination to source) into `(dw, dh)`, with a
/// replicated or constant (`bval`) border.
pub(crate) fn warp_linear_remap_u8(
    src: &Image<u8>,
    inv: &[f64; 6],
    (dw, dh): (usize, usize),
    replicate: bool,
    bval: u8,
) -> Image<u8> {
    let cn = src.channels();
    let ab = (1 << AB_BITS) as f64;
    // saturate_cast<int> of a double: rounded half to even, clamped to i32.
    let fix = |v: f64| (v * ab).round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32;
    let adelta: Vec<i32> = (0..dw).map(|x| fix(inv[0] * x as f64)).collect();
    let bdelta: Vec<i32> = (0..dw).map(|x| fix(inv[3] * x as f64)).collect();
    let round_delta = (1 << AB_BITS) / TAB as i32 / 2;
    let px = Taps { src, replicate, bval };
    let mut dst = Image::<u8>::new(dw, dh, cn).expect("channels");
    let rl = dw * cn;
    par_rows(dst.data_mut(), rl, |y0, band| {
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let y = y0 + i;
            let x0 = fix(inv[1] * y as f64 + inv[2]).wrapping_add(round_delta);
            let yy0 = fix(inv[4] * y as f64 + inv[5]).wrapping_add(round_delta);
            for (x, o) in out.chunks_exact_mut(cn).enumerate() {
                let xs = x0.wrapping_add(adelta[x]) >> (AB_BITS - INTER_BITS);
                let ys = yy0.wrapping_add(bdelta[x]) >> (AB_BITS - INTER_BITS);
                // saturate_cast<short> of the integer parts, as OpenCV's coordinate map stores them
                let sx = (xs >> INTER_BITS).clamp(i16::MIN as i32, i16::MAX as i32);
                let sy = (ys >> INTER_BITS).clamp(i16::MIN as i32, i16::MAX as i32);
                let a = ((ys & (TAB as i32 - 1)) as usize) * TAB + (xs & (TAB as i32 - 1)) as usize;
                px.linear(sx, sy, &table()[a * 4..a * 4 + 4], o);
            }
        }
    });
    dst
}

/// Source pixels with OpenCV's border rules for `remap`.
struct Taps<'a> {
    src: &'a Image<u8>,
    replicate: bool,
    bval: u8,
}

impl Taps<'_> {
    /// `borderInterpolate` for the two supported modes; `None` outside a constant border.
    fn at(&self, v: i32, len: usize) -> Option<usize> {
        if (0..len as i32).contains(&v) {
            Some(v as usize)
        } else if self.replicate {
            Some(v.clamp(0, len as i32 - 1) as usize)
        } else {
            None
        }
    }

    /// Integer bilinear (`remapBilinear`, 8-bit): taps outside a constant border read `bval`.
    fn linear(&self, sx: i32, sy: i32, w: &[i16], out: &mut [u8]) {
        let (cn, s) = (self.src.channels(), self.src);
        for (c, v) in out.iter_mut().enumerate() {
            let mut sum = 0i32;
            for (n, &wn) in w.iter().enumerate() {
                let p = match (self.at(sx + (n % 2) as i32, s.width()), self.at(sy + (n / 2) as i32, s.height())) {
                    (Some(x), Some(y)) => s.row(y)[x * cn + c],
                    _ => self.bval,
                };
                sum += p as i32 * wn as i32;
            }
            *v = ((sum + (1 << 14)) >> 15).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::border::BorderType;
    use crate::geometry::{warp_affine, Interpolation};
    use crate::image::Image;

    /// cv2.warpAffine (opencv-python 5.0.0) of a 9x7 2-channel image, pixel i = (37 i + 11) % 251,
    /// by getRotationMatrix2D((4.2, 3.1), 33, 1.1), INTER_LINEAR, border value 9.
    #[test]
    fn two_channel_bilinear_matches_opencv() {
        let src = Image::<u8>::from_vec(9, 7, 2, (0..126u32).map(|i| ((i * 37 + 11) % 251) as u8).collect()).unwrap();
        let m = [
            0.9225376247399665,
            0.5991029385165298,
            -1.531877090948969,
            -0.5991029385165298,
            0.9225376247399665,
            2.7563655834183245,
        ];
        let constant: [u8; 126] = [
            9, 9, 36, 14, 43, 67, 110, 140, 120, 157, 132, 169, 135, 172, 158, 195, 52, 66, 71, 83, 199, 48, 155, 70,
            157, 37, 107, 144, 62, 99, 79, 116, 56, 93, 52, 85, 130, 145, 122, 135, 134, 159, 151, 116, 163, 200, 146,
            183, 163, 200, 126, 163, 77, 114, 229, 45, 156, 78, 135, 69, 118, 83, 58, 95, 88, 125, 87, 124, 99, 136,
            110, 147, 154, 151, 169, 142, 176, 129, 195, 60, 161, 166, 145, 182, 133, 170, 67, 104, 68, 105, 52, 89,
            64, 101, 126, 115, 90, 124, 105, 142, 119, 156, 131, 168, 139, 176, 92, 113, 25, 45, 142, 123, 209, 63,
            179, 53, 131, 94, 127, 164, 38, 69, 38, 50, 9, 9,
        ];
        let replicate: [u8; 126] = [
            198, 102, 183, 40, 61, 98, 110, 140, 120, 157, 132, 169, 135, 172, 158, 195, 124, 161, 161, 190, 219, 52,
            155, 70, 157, 37, 107, 144, 62, 99, 79, 116, 56, 93, 58, 95, 130, 145, 122, 135, 134, 159, 151, 116, 163,
            200, 146, 183, 163, 200, 126, 163, 77, 114, 229, 45, 156, 78, 135, 69, 118, 83, 58, 95, 88, 125, 87, 124,
            99, 136, 110, 147, 154, 151, 169, 142, 176, 129, 195, 60, 161, 166, 145, 182, 133, 170, 67, 104, 68, 105,
            52, 89, 64, 101, 126, 115, 90, 124, 105, 142, 119, 156, 131, 168, 139, 176, 156, 193, 37, 74, 142, 123,
            209, 63, 179, 53, 131, 94, 127, 164, 45, 82, 103, 140, 159, 196,
        ];
        for (border, want) in [(BorderType::Constant, constant), (BorderType::Replicate, replicate)] {
            let got = warp_affine(&src, &m, (9, 7), Interpolation::Linear, border, 9.0).unwrap();
            assert_eq!(got.data(), &want[..], "{border:?}");
        }
    }
}
