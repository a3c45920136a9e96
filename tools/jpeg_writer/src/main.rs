//! Writes YCCK (baseline with 2x2 Y and K; progressive 4:4:4), 4:4:0 and 4:1:1 JPEGs of a
//! deterministic 45x37 pattern into the directory given as the only argument.

use mozjpeg::{ColorSpace, Compress};

const W: usize = 45;
const H: usize = 37;

/// Smooth gradients, sharp colour edges and a checker: every chroma path has work to do.
fn pattern(channels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(W * H * channels);
    for y in 0..H {
        for x in 0..W {
            let edge = if (x / 7 + y / 5) % 2 == 0 { 60 } else { 0 };
            let disc = if (x as i32 - 30).pow(2) + (y as i32 - 12).pow(2) < 64 { 120 } else { 0 };
            let v = [
                (x * 255 / (W - 1)) as i32 - edge / 2 + disc,
                (y * 255 / (H - 1)) as i32 + edge - disc / 2,
                ((x + y) * 4 % 256) as i32 + disc / 3,
                (((x * 13 + y * 7) % 64) * 3) as i32 + edge,
            ];
            out.extend(v[..channels].iter().map(|&c| c.clamp(0, 255) as u8));
        }
    }
    out
}

fn write(dir: &std::path::Path, name: &str, input: ColorSpace, setup: impl FnOnce(&mut Compress)) {
    let channels = if input == ColorSpace::JCS_CMYK { 4 } else { 3 };
    let mut c = Compress::new(input);
    c.set_fastest_defaults();
    c.set_size(W, H);
    c.set_quality(85.0);
    setup(&mut c);
    let mut s = c.start_compress(Vec::new()).expect("start");
    s.write_scanlines(&pattern(channels)).expect("scanlines");
    let bytes = s.finish().expect("finish");
    std::fs::write(dir.join(name), bytes).expect("write");
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: jpeg_writer OUT_DIR"));
    write(&dir, "ycck_h2v2.jpg", ColorSpace::JCS_CMYK, |c| {
        c.set_color_space(ColorSpace::JCS_YCCK);
        for (i, comp) in c.components_mut().iter_mut().enumerate() {
            let f = if i == 0 || i == 3 { 2 } else { 1 };
            comp.h_samp_factor = f;
            comp.v_samp_factor = f;
        }
    });
    write(&dir, "ycck_444_progressive.jpg", ColorSpace::JCS_CMYK, |c| {
        c.set_color_space(ColorSpace::JCS_YCCK);
        for comp in c.components_mut() {
            comp.h_samp_factor = 1;
            comp.v_samp_factor = 1;
        }
        c.set_progressive_mode();
    });
    write(&dir, "rgb_440.jpg", ColorSpace::JCS_RGB, |c| c.set_chroma_sampling_pixel_sizes((1, 2), (1, 2)));
    write(&dir, "rgb_411.jpg", ColorSpace::JCS_RGB, |c| c.set_chroma_sampling_pixel_sizes((4, 1), (4, 1)));
    write(&dir, "rgb_440_progressive.jpg", ColorSpace::JCS_RGB, |c| {
        c.set_chroma_sampling_pixel_sizes((1, 2), (1, 2));
        c.set_progressive_mode();
    });
}
