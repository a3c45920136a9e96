/// How pixels outside the image are synthesised (OpenCV's `BorderTypes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum BorderType {
    /// `iiiiii|abcdefgh|iiiiiii` with a given value.
    Constant,
    /// `aaaaaa|abcdefgh|hhhhhhh`
    Replicate,
    /// `fedcba|abcdefgh|hgfedcb`
    Reflect,
    /// `cdefgh|abcdefgh|abcdefg`
    Wrap,
    /// `gfedcb|abcdefgh|gfedcba` (OpenCV's default)
    #[default]
    Reflect101,
}

/// Maps a coordinate outside `0..len` to the source coordinate, as `cv::borderInterpolate`;
/// `None` for [`BorderType::Constant`]. `len` must be positive.
pub fn border_interpolate(p: isize, len: usize, border: BorderType) -> Option<usize> {
    let n = len as isize;
    if (0..n).contains(&p) {
        return Some(p as usize);
    }
    let mut p = p;
    match border {
        BorderType::Constant => return None,
        BorderType::Replicate => p = if p < 0 { 0 } else { n - 1 },
        BorderType::Reflect | BorderType::Reflect101 => {
            if n == 1 {
                return Some(0);
            }
            let delta = (border == BorderType::Reflect101) as isize;
            loop {
                if p < 0 {
                    p = -p - 1 + delta;
                } else {
                    p = n - 1 - (p - n) - delta;
                }
                if (0..n).contains(&p) {
                    break;
                }
            }
        }
        BorderType::Wrap => {
            p = p.rem_euclid(n);
        }
    }
    Some(p as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn interpolate_like_opencv() {
        assert_eq!(border_interpolate(-1, 5, BorderType::Reflect101), Some(1));
        assert_eq!(border_interpolate(-1, 5, BorderType::Reflect), Some(0));
        assert_eq!(border_interpolate(5, 5, BorderType::Reflect101), Some(3));
        assert_eq!(border_interpolate(-7, 3, BorderType::Reflect101), Some(1));
        assert_eq!(border_interpolate(-2, 1, BorderType::Reflect101), Some(0));
        assert_eq!(border_interpolate(-1, 5, BorderType::Wrap), Some(4));
        assert_eq!(border_interpolate(9, 5, BorderType::Replicate), Some(4));
        assert_eq!(border_interpolate(9, 5, BorderType::Constant), None);
    }
}
