//! Drawing filled or outlined rectangles and circles, e.g. to build masks.
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};

fn put<T: Pixel>(img: &mut Image<T>, x: i64, y: i64, color: &[T]) {
    if x >= 0 && y >= 0 && (x as usize) < img.width() && (y as usize) < img.height() {
        for (c, &v) in color.iter().enumerate().take(img.channels()) {
            img.set(x as usize, y as usize, c, v);
        }
    }
}

fn check_color<T: Pixel>(op: &'static str, img: &Image<T>, color: &[T]) -> Result<()> {
    if color.len() < img.channels() {
        return Err(bad(op, format!("colour has {} values, image has {} channels", color.len(), img.channels())));
    }
    Ok(())
}

/// `cv::rectangle` between corners `p1` and `p2` (inclusive); `thickness < 0` fills.
pub fn rectangle<T: Pixel>(
    img: &mut Image<T>,
    p1: (i64, i64),
    p2: (i64, i64),
    color: &[T],
    thickness: i64,
) -> Result<()> {
    check_color("rectangle", img, color)?;
    let (x0, x1) = (p1.0.min(p2.0), p1.0.max(p2.0));
    let (y0, y1) = (p1.1.min(p2.1), p1.1.max(p2.1));
    let t = thickness.max(1);
    let half = (t - 1) / 2;
    let (x0c, x1c) = (x0.max(-t), x1.min(img.width() as i64 + t));
    let (y0c, y1c) = (y0.max(-t), y1.min(img.height() as i64 + t));
    for y in y0c - half..=y1c + half {
        for x in x0c - half..=x1c + half {
            let inside = x >= x0 && x <= x1 && y >= y0 && y <= y1;
            let on_edge =
                (x - x0).abs() <= half || (x - x1).abs() <= half || (y - y0).abs() <= half || (y - y1).abs() <= half;
            if (thickness < 0 && inside) || (thickness >= 0 && on_edge) {
                put(img, x, y, color);
            }
        }
    }
    Ok(())
}

/// `cv::circle` of integer `radius` about `center`; `thickness < 0` fills the disc.
pub fn circle<T: Pixel>(
    img: &mut Image<T>,
    center: (i64, i64),
    radius: i64,
    color: &[T],
    thickness: i64,
) -> Result<()> {
    check_color("circle", img, color)?;
    if radius < 0 {
        return Err(bad("circle", "radius must be non-negative"));
    }
    let t = thickness.max(1) as f64;
    let r = radius as f64;
    let reach = radius + thickness.max(1);
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let d = ((dx * dx + dy * dy) as f64).sqrt();
            let hit =
                if thickness < 0 { (dx * dx + dy * dy) as f64 <= r * r + r * 0.5 } else { (d - r).abs() <= t / 2.0 };
            if hit {
                put(img, center.0 + dx, center.1 + dy, color);
            }
        }
    }
    Ok(())
}
