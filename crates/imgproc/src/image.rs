use crate::error::{Error, Result};

/// A channel type an [`Image`] can hold: `u8`, `u16` or `f32`.
pub trait Pixel: Copy + Default + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// Largest representable value (1.0 is *not* implied for f32: it is `f32::MAX`).
    const MAX: Self;
    const MIN: Self;
    const IS_FLOAT: bool;
    fn to_f64(self) -> f64;
    fn to_f32(self) -> f32;
    /// OpenCV's `saturate_cast` from double: round half to even, then clamp.
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
}

impl Pixel for u8 {
    const MAX: Self = u8::MAX;
    const MIN: Self = 0;
    const IS_FLOAT: bool = false;
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v.round_ties_even().clamp(0.0, 255.0) as u8
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v.round_ties_even().clamp(0.0, 255.0) as u8
    }
}

impl Pixel for u16 {
    const MAX: Self = u16::MAX;
    const MIN: Self = 0;
    const IS_FLOAT: bool = false;
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v.round_ties_even().clamp(0.0, 65535.0) as u16
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v.round_ties_even().clamp(0.0, 65535.0) as u16
    }
}

impl Pixel for f32 {
    const MAX: Self = f32::MAX;
    const MIN: Self = f32::MIN;
    const IS_FLOAT: bool = true;
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Pixel for i16 {
    const MAX: Self = i16::MAX;
    const MIN: Self = i16::MIN;
    const IS_FLOAT: bool = false;
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v.round_ties_even().clamp(-32768.0, 32767.0) as i16
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v.round_ties_even().clamp(-32768.0, 32767.0) as i16
    }
}

impl Pixel for i32 {
    const MAX: Self = i32::MAX;
    const MIN: Self = i32::MIN;
    const IS_FLOAT: bool = false;
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        Self::from_f64(v as f64)
    }
}

/// An interleaved image: `height` rows of `width` pixels of `channels` (1-4) values each.
///
/// `i16` (Sobel's `CV_16S`) and `i32` (labels) images are allowed as outputs too.
#[derive(Clone, Debug, PartialEq)]
pub struct Image<T> {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<T>,
}

impl<T: Pixel> Image<T> {
    /// A zero-filled image. A zero width or height is allowed (an "empty" image, which every
    /// operation rejects); the channel count must be 1-4.
    pub fn new(width: usize, height: usize, channels: usize) -> Result<Self> {
        Self::filled(width, height, channels, T::default())
    }

    /// An image whose values `fill` writes, without zeroing the buffer first (for outputs every
    /// value of which a kernel writes anyway: a zeroing pass costs as much as a fast kernel).
    ///
    /// # Safety
    /// `fill` must write every element of the slice it gets before returning normally.
    pub(crate) unsafe fn from_fn_uninit(
        width: usize,
        height: usize,
        channels: usize,
        fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>]),
    ) -> Result<Self> {
        check_channels(channels)?;
        let n = width * height * channels;
        let mut v: Vec<std::mem::MaybeUninit<T>> = Vec::with_capacity(n);
        // SAFETY: `MaybeUninit` values need no initialisation; the capacity is `n`.
        unsafe { v.set_len(n) };
        fill(&mut v);
        let mut v = std::mem::ManuallyDrop::new(v);
        // SAFETY: `fill` wrote every element (the caller's contract) and `MaybeUninit<T>` has
        // the layout of `T`; pointer, length and capacity come from a live Vec of that layout.
        let data = unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity()) };
        Ok(Self { width, height, channels, data })
    }

    pub fn filled(width: usize, height: usize, channels: usize, value: T) -> Result<Self> {
        check_channels(channels)?;
        Ok(Self { width, height, channels, data: vec![value; width * height * channels] })
    }

    pub fn from_vec(width: usize, height: usize, channels: usize, data: Vec<T>) -> Result<Self> {
        check_channels(channels)?;
        if data.len() != width * height * channels {
            return Err(Error::Shape { width, height, channels, got: data.len() });
        }
        Ok(Self { width, height, channels, data })
    }

    /// Builds an image by evaluating `f(x, y, c)` everywhere.
    pub fn from_fn(
        width: usize,
        height: usize,
        channels: usize,
        mut f: impl FnMut(usize, usize, usize) -> T,
    ) -> Result<Self> {
        check_channels(channels)?;
        let mut data = Vec::with_capacity(width * height * channels);
        for y in 0..height {
            for x in 0..width {
                for c in 0..channels {
                    data.push(f(x, y, c));
                }
            }
        }
        Ok(Self { width, height, channels, data })
    }

    #[inline]
    pub fn width(&self) -> usize {
        self.width
    }
    #[inline]
    pub fn height(&self) -> usize {
        self.height
    }
    #[inline]
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Values per row (`width * channels`).
    #[inline]
    pub fn row_len(&self) -> usize {
        self.width * self.channels
    }
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
    pub fn data(&self) -> &[T] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
    #[inline]
    pub fn row(&self, y: usize) -> &[T] {
        let n = self.row_len();
        &self.data[y * n..(y + 1) * n]
    }
    #[inline]
    pub fn row_mut(&mut self, y: usize) -> &mut [T] {
        let n = self.row_len();
        &mut self.data[y * n..(y + 1) * n]
    }
    /// The value at `(x, y)`, channel `c`; `None` outside the image.
    pub fn get(&self, x: usize, y: usize, c: usize) -> Option<T> {
        (x < self.width && y < self.height && c < self.channels)
            .then(|| self.data[(y * self.width + x) * self.channels + c])
    }
    pub fn set(&mut self, x: usize, y: usize, c: usize, v: T) -> Option<()> {
        (x < self.width && y < self.height && c < self.channels).then(|| {
            self.data[(y * self.width + x) * self.channels + c] = v;
        })
    }
    /// Same geometry, new pixel type, element by element.
    pub fn map<U: Pixel>(&self, f: impl Fn(T) -> U) -> Image<U> {
        Image {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }
    /// The image as f32 values (no scaling).
    pub fn to_f32(&self) -> Image<f32> {
        self.map(|v| v.to_f32())
    }
    /// Splits into single-channel planes.
    pub fn split(&self) -> Vec<Image<T>> {
        (0..self.channels)
            .map(|c| Image {
                width: self.width,
                height: self.height,
                channels: 1,
                data: self.data.iter().skip(c).step_by(self.channels).copied().collect(),
            })
            .collect()
    }
    /// Interleaves single-channel planes of equal size.
    pub fn merge(planes: &[Image<T>]) -> Result<Image<T>> {
        let first = planes.first().ok_or_else(|| crate::error::bad("merge", "no planes"))?;
        check_channels(planes.len())?;
        if planes.iter().any(|p| p.channels != 1 || p.width != first.width || p.height != first.height) {
            return Err(crate::error::bad("merge", "planes must be single-channel and of equal size"));
        }
        let n = planes.len();
        let mut data = vec![T::default(); first.data.len() * n];
        for (c, p) in planes.iter().enumerate() {
            for (i, &v) in p.data.iter().enumerate() {
                data[i * n + c] = v;
            }
        }
        Ok(Image { width: first.width, height: first.height, channels: n, data })
    }

    // ---- argument checks shared by the operations ----
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        if self.is_empty() {
            return Err(Error::Empty { op, width: self.width, height: self.height });
        }
        if T::IS_FLOAT && self.data.iter().any(|v| v.to_f64().is_nan()) {
            return Err(Error::NaN { op });
        }
        Ok(())
    }
    pub(crate) fn check_cn(&self, op: &'static str, expected: &'static str, ok: &[usize]) -> Result<()> {
        self.check(op)?;
        if !ok.contains(&self.channels) {
            return Err(Error::Channels { op, expected, got: self.channels });
        }
        Ok(())
    }
}

fn check_channels(c: usize) -> Result<()> {
    if (1..=4).contains(&c) {
        Ok(())
    } else {
        Err(Error::Channels { op: "Image", expected: "1-4", got: c })
    }
}

// ---- conversions from and to the `image` crate ----

impl From<&image::GrayImage> for Image<u8> {
    fn from(img: &image::GrayImage) -> Self {
        Image { width: img.width() as usize, height: img.height() as usize, channels: 1, data: img.as_raw().clone() }
    }
}
impl From<&image::RgbImage> for Image<u8> {
    fn from(img: &image::RgbImage) -> Self {
        Image { width: img.width() as usize, height: img.height() as usize, channels: 3, data: img.as_raw().clone() }
    }
}
impl From<&image::RgbaImage> for Image<u8> {
    fn from(img: &image::RgbaImage) -> Self {
        Image { width: img.width() as usize, height: img.height() as usize, channels: 4, data: img.as_raw().clone() }
    }
}
impl From<&image::ImageBuffer<image::Luma<u16>, Vec<u16>>> for Image<u16> {
    fn from(img: &image::ImageBuffer<image::Luma<u16>, Vec<u16>>) -> Self {
        Image { width: img.width() as usize, height: img.height() as usize, channels: 1, data: img.as_raw().clone() }
    }
}

impl Image<u8> {
    /// 8-bit image with the decoded channel count kept (gray 1, gray+alpha 2, RGB 3, RGBA 4);
    /// deeper images are scaled to 8 bits as the `image` crate does. Colour order is RGB.
    pub fn from_dynamic(img: &image::DynamicImage) -> Self {
        use image::DynamicImage as D;
        match img {
            D::ImageLuma8(i) => i.into(),
            D::ImageRgb8(i) => i.into(),
            D::ImageRgba8(i) => i.into(),
            D::ImageLumaA8(i) => {
                Image { width: i.width() as usize, height: i.height() as usize, channels: 2, data: i.as_raw().clone() }
            }
            other => {
                if other.color().has_color() {
                    if other.color().has_alpha() {
                        (&other.to_rgba8()).into()
                    } else {
                        (&other.to_rgb8()).into()
                    }
                } else {
                    (&other.to_luma8()).into()
                }
            }
        }
    }

    /// Converts to the `image` crate (1 → Luma8, 2 → LumaA8, 3 → Rgb8, 4 → Rgba8).
    pub fn to_dynamic(&self) -> image::DynamicImage {
        let (w, h, d) = (self.width as u32, self.height as u32, self.data.clone());
        // The buffer length always matches, so these constructors cannot fail.
        match self.channels {
            1 => image::DynamicImage::ImageLuma8(image::ImageBuffer::from_raw(w, h, d).expect("size")),
            2 => image::DynamicImage::ImageLumaA8(image::ImageBuffer::from_raw(w, h, d).expect("size")),
            3 => image::DynamicImage::ImageRgb8(image::ImageBuffer::from_raw(w, h, d).expect("size")),
            _ => image::DynamicImage::ImageRgba8(image::ImageBuffer::from_raw(w, h, d).expect("size")),
        }
    }
}

impl Image<u16> {
    pub fn to_dynamic(&self) -> image::DynamicImage {
        let (w, h, d) = (self.width as u32, self.height as u32, self.data.clone());
        match self.channels {
            1 => image::DynamicImage::ImageLuma16(image::ImageBuffer::from_raw(w, h, d).expect("size")),
            2 => image::DynamicImage::ImageLumaA16(image::ImageBuffer::from_raw(w, h, d).expect("size")),
            3 => image::DynamicImage::ImageRgb16(image::ImageBuffer::from_raw(w, h, d).expect("size")),
            _ => image::DynamicImage::ImageRgba16(image::ImageBuffer::from_raw(w, h, d).expect("size")),
        }
    }
}

impl Image<f32> {
    pub fn to_dynamic(&self) -> image::DynamicImage {
        let (w, h) = (self.width as u32, self.height as u32);
        match self.channels {
            3 => image::DynamicImage::ImageRgb32F(image::ImageBuffer::from_raw(w, h, self.data.clone()).expect("size")),
            4 => {
                image::DynamicImage::ImageRgba32F(image::ImageBuffer::from_raw(w, h, self.data.clone()).expect("size"))
            }
            _ => {
                let planes = self.split();
                let g: Vec<f32> = planes[0].data.clone();
                let rgb: Vec<f32> = g.iter().flat_map(|&v| [v, v, v]).collect();
                image::DynamicImage::ImageRgb32F(image::ImageBuffer::from_raw(w, h, rgb).expect("size"))
            }
        }
    }
}
