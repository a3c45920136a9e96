//! The one synthetic medvlsm-layout dataset writer of the tests: `images/`, `masks/` and
//! `anns/{split}.json`. Each test keeps its own drawing and prompts (they fix its Dice values and
//! error messages); this writes them out. Shared with vlsm-cli's tests through `#[path]`.

use std::path::{Path, PathBuf};

use serde_json::Value;

type Pixel<'a, T> = Box<dyn Fn(u32, u32, u32) -> T + 'a>;

/// `n` images of `w`x`h`, image `i` drawn pixel by pixel by `image(i, x, y)` with its mask
/// `mask(i, x, y)`; named `{prefix}{i}.png` and `{prefix}{i}{mask_suffix}.png`; every record has the
/// prompts `prompts(i)` and the same list of records goes to each split.
pub struct Synth<'a> {
    n: u32,
    size: (u32, u32),
    image: Pixel<'a, [u8; 3]>,
    mask: Pixel<'a, bool>,
    prefix: &'a str,
    mask_suffix: &'a str,
    bbox: bool,
    prompts: Box<dyn Fn(u32) -> Value + 'a>,
    splits: &'a [&'a str],
}

impl<'a> Synth<'a> {
    /// Black images, empty masks, names `{i}.png`, no prompts, splits train and val.
    pub fn new(n: u32, w: u32, h: u32) -> Self {
        Synth {
            n,
            size: (w, h),
            image: Box::new(|_, _, _| [0, 0, 0]),
            mask: Box::new(|_, _, _| false),
            prefix: "",
            mask_suffix: "",
            bbox: false,
            prompts: Box::new(|_| serde_json::json!({})),
            splits: &["train", "val"],
        }
    }

    /// The colour of pixel (x, y) of image i.
    pub fn image(mut self, f: impl Fn(u32, u32, u32) -> [u8; 3] + 'a) -> Self {
        self.image = Box::new(f);
        self
    }

    /// Whether pixel (x, y) of mask i is foreground (255).
    pub fn mask(mut self, f: impl Fn(u32, u32, u32) -> bool + 'a) -> Self {
        self.mask = Box::new(f);
        self
    }

    /// Images `{prefix}{i}.png`, masks `{prefix}{i}{mask_suffix}.png`.
    pub fn names(mut self, prefix: &'a str, mask_suffix: &'a str) -> Self {
        self.prefix = prefix;
        self.mask_suffix = mask_suffix;
        self
    }

    /// Records carry `"bbox": [0, 0, 1, 1]` (after the names, before the prompts).
    pub fn bbox(mut self) -> Self {
        self.bbox = true;
        self
    }

    /// The same `prompts` object in every record.
    pub fn prompts(self, prompts: Value) -> Self {
        self.prompts_with(move |_| prompts.clone())
    }

    /// Record i's `prompts` object.
    pub fn prompts_with(mut self, f: impl Fn(u32) -> Value + 'a) -> Self {
        self.prompts = Box::new(f);
        self
    }

    /// The splits whose `anns/{split}.json` are written; none: no `anns/` at all.
    pub fn splits(mut self, splits: &'a [&'a str]) -> Self {
        self.splits = splits;
        self
    }

    /// The records, in order.
    pub fn records(&self) -> Vec<Value> {
        (0..self.n)
            .map(|i| {
                let mut r = serde_json::json!({
                    "img_name": format!("{}{i}.png", self.prefix),
                    "mask_name": format!("{}{i}{}.png", self.prefix, self.mask_suffix),
                });
                if self.bbox {
                    r["bbox"] = serde_json::json!([0, 0, 1, 1]);
                }
                r["prompts"] = (self.prompts)(i);
                r
            })
            .collect()
    }

    /// Writes the dataset into `ds` and returns it.
    pub fn write(&self, ds: &Path) -> PathBuf {
        self.write_with(ds, |_| {})
    }

    /// Writes the dataset into `ds` with the records as `edit` leaves them, and returns it.
    pub fn write_with(&self, ds: &Path, edit: impl FnOnce(&mut Vec<Value>)) -> PathBuf {
        std::fs::create_dir_all(ds.join("images")).unwrap();
        std::fs::create_dir_all(ds.join("masks")).unwrap();
        let (w, h) = self.size;
        for i in 0..self.n {
            let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb((self.image)(i, x, y)));
            img.save(ds.join(format!("images/{}{i}.png", self.prefix))).unwrap();
            let m = image::GrayImage::from_fn(w, h, |x, y| image::Luma([if (self.mask)(i, x, y) { 255 } else { 0 }]));
            m.save(ds.join(format!("masks/{}{i}{}.png", self.prefix, self.mask_suffix))).unwrap();
        }
        if !self.splits.is_empty() {
            std::fs::create_dir_all(ds.join("anns")).unwrap();
            let mut recs = self.records();
            edit(&mut recs);
            let json = serde_json::to_string(&recs).unwrap();
            for split in self.splits {
                std::fs::write(ds.join(format!("anns/{split}.json")), &json).unwrap();
            }
        }
        ds.to_path_buf()
    }
}

type Voxel<'a, T> = Box<dyn Fn(u32, usize, usize, usize) -> T + 'a>;

/// Writes `data` (x fastest) as a gzipped NIfTI-1 volume of `dims` whose affine is
/// diag(`spacing`) (float32 for `F32`, uint8 for `U8`).
pub fn write_nifti(path: &Path, dims: [usize; 3], spacing: [f64; 3], data: vlsm::io::OutputData) {
    let mut affine = [[0.0; 4]; 4];
    for (a, s) in spacing.iter().enumerate() {
        affine[a][a] = *s;
    }
    affine[3][3] = 1.0;
    let h = vlsm::io::NiftiHeader::for_grid(dims, spacing, affine).unwrap();
    vlsm::io::write_like(path, &h, data).unwrap();
}

/// The volume counterpart of [`Synth`]: `n` NIfTI volumes of `dims` (x, y, z) with voxel
/// `spacing` in mm, image `i`'s voxel (x, y, z) = `image(i, x, y, z)` (float32), its mask
/// `mask(i, x, y, z)` (uint8 0/1); both named `vol{i}.nii.gz` (in `images/` and `masks/`); every
/// record has the prompts `prompts(i)`; the same records go to each split.
pub struct SynthVolumes<'a> {
    n: u32,
    dims: [usize; 3],
    spacing: [f64; 3],
    image: Voxel<'a, f32>,
    mask: Voxel<'a, bool>,
    prompts: Value,
    splits: &'a [&'a str],
}

impl<'a> SynthVolumes<'a> {
    /// Zero images, empty masks, no prompts, split test.
    pub fn new(n: u32, dims: [usize; 3], spacing: [f64; 3]) -> Self {
        SynthVolumes {
            n,
            dims,
            spacing,
            image: Box::new(|_, _, _, _| 0.0),
            mask: Box::new(|_, _, _, _| false),
            prompts: serde_json::json!({}),
            splits: &["test"],
        }
    }

    pub fn image(mut self, f: impl Fn(u32, usize, usize, usize) -> f32 + 'a) -> Self {
        self.image = Box::new(f);
        self
    }

    pub fn mask(mut self, f: impl Fn(u32, usize, usize, usize) -> bool + 'a) -> Self {
        self.mask = Box::new(f);
        self
    }

    pub fn prompts(mut self, prompts: Value) -> Self {
        self.prompts = prompts;
        self
    }

    pub fn splits(mut self, splits: &'a [&'a str]) -> Self {
        self.splits = splits;
        self
    }

    /// Writes the dataset into `ds` and returns it.
    pub fn write(&self, ds: &Path) -> PathBuf {
        std::fs::create_dir_all(ds.join("images")).unwrap();
        std::fs::create_dir_all(ds.join("masks")).unwrap();
        let [nx, ny, nz] = self.dims;
        let mut recs = Vec::new();
        for i in 0..self.n {
            let (mut img, mut m) = (Vec::with_capacity(nx * ny * nz), Vec::with_capacity(nx * ny * nz));
            for z in 0..nz {
                for y in 0..ny {
                    for x in 0..nx {
                        img.push((self.image)(i, x, y, z));
                        m.push(u8::from((self.mask)(i, x, y, z)));
                    }
                }
            }
            let name = format!("vol{i}.nii.gz");
            write_nifti(&ds.join("images").join(&name), self.dims, self.spacing, vlsm::io::OutputData::F32(&img));
            write_nifti(&ds.join("masks").join(&name), self.dims, self.spacing, vlsm::io::OutputData::U8(&m));
            recs.push(serde_json::json!({"img_name": name, "mask_name": name, "prompts": self.prompts}));
        }
        std::fs::create_dir_all(ds.join("anns")).unwrap();
        for split in self.splits {
            std::fs::write(ds.join(format!("anns/{split}.json")), serde_json::to_string(&recs).unwrap()).unwrap();
        }
        ds.to_path_buf()
    }
}
