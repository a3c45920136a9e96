//! `vlsm train --config FILE.toml`: the training configuration.
//!
//! ```toml
//! output_dir = "runs/kvasir"          # required; run directory (checkpoints, logs, curves)
//! seed = 42                           # default 42: init, shuffling and prompt sampling
//! threads = 0                         # default 0 = all cores (RAYON_NUM_THREADS / CANDLE_NUM_THREADS)
//!
//! [model]
//! kind = "clipseg"                    # required; architecture: clipseg | textunet | unet | vit_classify | biomedclipseg | cris
//! dir = "models/clipseg-rd64-refined" # required for clipseg (model directory or weight file, or a
//!                                     # Hugging Face Hub id org/name[@revision] when no such path);
//!                                     # textunet and unet train from scratch and take no dir
//! freeze = ["vision", "text"]         # default ["vision", "text"]; parts kept fixed: vision | text | decoder
//! channels = [16, 32, 64, 128, 256]   # unet and textunet; level widths, shallow to deep (the default)
//! init_from = "models/default"        # start from a trained model directory of the same kind ("default" =
//!                                     #   the built-in model): its architecture (config.json) and weights;
//!                                     #   data.image_size still sets the input size. textunet / unet: instead
//!                                     #   of channels; clipseg / biomedclipseg / cris (a `vlsm train` RUN/best
//!                                     #   or any model directory of that kind): instead of dir (and decoder_from)
//! presence = false                    # textunet only; add a presence head (is the prompt's target in the
//!                                     #   image?), trained on the empty targets of negative prompts / crops
//!                                     # vit_classify: dir is a ViT directory, weights optional;
//!                                     # "vision" in freeze trains only the new head
//! decoder_from = "models/clipseg"     # optional; CLIPSeg dir/file (or Hub id) whose decoder.* start the decoder (BiomedCLIPSeg-D)
//!
//! [data]
//! datasets = ["data/kvasir_polyp"]    # required, non-empty; medvlsm-layout dirs, pooled
//! prompts = ["p0", "p1"]              # default ["p0".."p9"]; prompt keys sampled per image load
//! image_size = 352                    # default 352; square model input size in pixels
//! feature_cache = true                # default true; cache frozen-encoder activations (needs vision frozen)
//! cache_dir = "cache"                 # default "<output_dir>/feature_cache"; share it to reuse across runs
//! negative_prompts = 0.0             # default 0; textunet only: fraction of training samples given the prompt
//!                                     #   of a dataset sharing no prompt with theirs, and an empty mask
//! flips = false                       # default false; textunet only: random horizontal/vertical flips of
//!                                     #   training samples, the prompt's position words flipped with them
//!
//! [augment]                           # textunet only; each off by default; drawn per training sample
//! scale = [0.75, 1.25]                # random zoom about a jittered centre (1 = none; > 1 zooms in)
//! rotate = 15.0                       # random rotation in degrees, uniform in [-rotate, rotate]
//! translate = 0.06                    # random shift of the centre, a fraction of the side
//! brightness = 0.2                    # colour jitter: factors uniform in [1 - x, 1 + x]
//! contrast = 0.2
//! saturation = 0.2
//!
//! [train]
//! epochs = 1000                       # default 1000 (medvlsm max_epochs)
//! min_epochs = 10                     # default 10; early stopping cannot end the run before this
//! batch_size = 16                     # default 16 (medvlsm datamodule; its run script uses 128)
//! lr = 2e-4                           # default 2e-4 (medvlsm clipseg.yaml; run script uses 2e-3)
//! weight_decay = 1e-3                 # default 1e-3; AdamW decoupled decay
//! betas = [0.9, 0.999]                # default [0.9, 0.999]
//! eps = 1e-8                          # default 1e-8
//! grad_clip = 0.5                     # default 0.5; max total L2 gradient norm, 0 = off
//! ema = 0.0                           # default 0 = off; decay of an exponential moving average of the
//!                                     #   weights (e.g. 0.999), updated every step; validation, best/ and
//!                                     #   the exported model use the average
//!
//! [scheduler]
//! kind = "plateau"                    # default "plateau": ReduceLROnPlateau on val loss, stepped each epoch;
//!                                     #   "cosine": linear warmup, then cosine decay to min_lr, every step
//! warmup_epochs = 0                   # cosine only; default 0
//! factor = 0.1                        # default 0.1; in (0, 1)
//! patience = 5                        # default 5
//! threshold = 1e-4                    # default 1e-4; relative improvement needed
//! cooldown = 0                        # default 0
//! min_lr = 0.0                        # default 0
//!
//! [loss]
//! kind = "dice_bce"                   # default "dice_bce"; dice | bce | dice_bce | contrastive (cris)
//! dice_weight = 1.0                   # default 1.0 (dice_bce only)
//! bce_weight = 0.2                    # default 0.2 (dice_bce only)
//! presence_weight = 0.5               # default 0.5; weight of the presence head's BCE (model.presence)
//!
//! [early_stopping]                    # on val Dice, higher is better
//! patience = 20                       # default 20; 0 = never stop early
//! min_delta = 1e-4                    # default 1e-4
//! ```
//! Relative paths are resolved against the directory of the config file.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use super::loss::LossKind;
use super::optim::AdamWParams;
use crate::models::seg::ModelKind;

/// What `vlsm train` trains (`model.kind`): a segmentation model of any [`ModelKind`], or a ViT
/// image classifier. Written as the kind's name ("clipseg", ..., "vit_classify").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TrainKind {
    Seg(ModelKind),
    VitClassify,
}

impl TrainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrainKind::Seg(k) => k.as_str(),
            TrainKind::VitClassify => "vit_classify",
        }
    }

    /// Every name `model.kind` takes.
    pub fn names() -> Vec<&'static str> {
        let mut v = ModelKind::names();
        v.push(TrainKind::VitClassify.as_str());
        v
    }

    /// The segmentation model kind, unless this is the classifier.
    pub fn model_kind(self) -> Option<ModelKind> {
        match self {
            TrainKind::Seg(k) => Some(k),
            TrainKind::VitClassify => None,
        }
    }
}

impl TryFrom<String> for TrainKind {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        match ModelKind::from_name(&s) {
            Some(k) => Ok(TrainKind::Seg(k)),
            None if s == TrainKind::VitClassify.as_str() => Ok(TrainKind::VitClassify),
            None => {
                Err(format!("model.kind: unknown model '{s}' (expected one of: {})", TrainKind::names().join(", ")))
            }
        }
    }
}

impl From<TrainKind> for String {
    fn from(k: TrainKind) -> String {
        k.as_str().to_string()
    }
}

impl std::fmt::Display for TrainKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for TrainKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for TrainKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
/// Parts of a model that can be frozen.
pub const FREEZE_PARTS: &[&str] = &["vision", "text", "decoder"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub output_dir: PathBuf,
    #[serde(default = "d_seed")]
    pub seed: u64,
    #[serde(default)]
    pub threads: usize,
    pub model: ModelConfig,
    pub data: DataConfig,
    #[serde(default)]
    pub train: TrainParams,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub early_stopping: EarlyStoppingConfig,
    #[serde(default, skip_serializing_if = "AugmentConfig::is_off")]
    pub augment: AugmentConfig,
}

/// `[augment]`: geometric and colour augmentation of training samples (textunet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Zoom range [min, max]; > 1 zooms in.
    pub scale: [f64; 2],
    /// Maximum rotation in degrees.
    pub rotate: f64,
    /// Maximum shift of the centre, as a fraction of the side.
    pub translate: f64,
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            scale: [1.0, 1.0],
            rotate: 0.0,
            translate: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }
}

impl AugmentConfig {
    pub fn is_off(&self) -> bool {
        *self == AugmentConfig::default()
    }

    /// Whether any geometric augmentation is on.
    pub fn geometric(&self) -> bool {
        self.scale != [1.0, 1.0] || self.rotate != 0.0 || self.translate != 0.0
    }

    /// Whether any colour augmentation is on.
    pub fn colour(&self) -> bool {
        self.brightness != 0.0 || self.contrast != 0.0 || self.saturation != 0.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub kind: TrainKind,
    #[serde(default)]
    pub dir: PathBuf,
    #[serde(default = "d_freeze")]
    pub freeze: Vec<String>,
    /// A CLIPSeg model directory or weight file whose `decoder.*` tensors start the decoder
    /// (BiomedCLIPSeg-D); clipseg and biomedclipseg only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_from: Option<PathBuf>,
    /// UNet level widths, shallow to deep (default [16, 32, 64, 128, 256]); unet only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<usize>>,
    /// A trained model directory of the same kind whose architecture and weights start the run
    /// (`"default"`: the built-in model); every segmentation kind (clipseg, biomedclipseg and
    /// cris take it instead of `dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// TextUNet: a presence head.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presence: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub datasets: Vec<PathBuf>,
    #[serde(default = "d_prompts")]
    pub prompts: Vec<String>,
    #[serde(default = "d_size")]
    pub image_size: usize,
    #[serde(default = "d_true")]
    pub feature_cache: bool,
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// TextUNet only: the fraction of training samples that get a prompt of a dataset sharing no
    /// prompt with theirs, and an empty target, so a prompt that does not fit the image is
    /// answered with no mask.
    #[serde(default)]
    pub negative_prompts: f64,
    /// TextUNet only: each training sample is flipped left-right and top-bottom with probability
    /// 1/2 each, and the position words of its prompt ("located in right of the image") with it.
    #[serde(default)]
    pub flips: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    pub epochs: usize,
    pub min_epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub grad_clip: f64,
    /// Decay of the weights' exponential moving average; 0 = off.
    #[serde(skip_serializing_if = "is_zero")]
    pub ema: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: 1000,
            min_epochs: 10,
            batch_size: 16,
            lr: 2e-4,
            weight_decay: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            grad_clip: 0.5,
            ema: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    pub kind: SchedulerKind,
    /// Cosine only: epochs of linear warmup from 0.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub warmup_epochs: usize,
    pub factor: f64,
    pub patience: usize,
    pub threshold: f64,
    pub cooldown: usize,
    pub min_lr: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            kind: SchedulerKind::Plateau,
            warmup_epochs: 0,
            factor: 0.1,
            patience: 5,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// ReduceLROnPlateau on val loss, stepped each epoch.
    Plateau,
    /// Linear warmup over `warmup_epochs`, then cosine decay to `min_lr` at the last epoch's end,
    /// set every optimizer step.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossName {
    Dice,
    Bce,
    DiceBce,
    /// CRIS's text-to-pixel contrastive loss: BCE with logits on the stride-4 dynamic-kernel
    /// response against the nearest-downsampled mask (cris only).
    Contrastive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub kind: LossName,
    pub dice_weight: f64,
    pub bce_weight: f64,
    /// Weight of the presence head's BCE (`model.presence`).
    pub presence_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { kind: LossName::DiceBce, dice_weight: 1.0, bce_weight: 0.2, presence_weight: 0.5 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingConfig {
    pub patience: usize,
    pub min_delta: f64,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        EarlyStoppingConfig { patience: 20, min_delta: 1e-4 }
    }
}

fn d_seed() -> u64 {
    42
}
fn d_freeze() -> Vec<String> {
    vec!["vision".into(), "text".into()]
}
fn d_prompts() -> Vec<String> {
    (0..10).map(|i| format!("p{i}")).collect()
}
fn d_size() -> usize {
    352
}
fn d_true() -> bool {
    true
}

impl TrainConfig {
    /// Reads, parses and validates a config file; relative paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        let mut cfg = Self::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let (dir, decoder_from) = (cfg.model.dir.clone(), cfg.model.decoder_from.clone());
        cfg.resolve_paths(base);
        // A model that is no path next to the config may be a Hugging Face Hub id.
        let hub = |key: &str, p: &Path| {
            crate::hub::resolve_relative(p, base).map_err(|e| anyhow!("{}: {key}: {e:#}", path.display()))
        };
        if !dir.as_os_str().is_empty() {
            cfg.model.dir = hub("model.dir", &dir)?;
        }
        if let Some(d) = decoder_from {
            cfg.model.decoder_from = Some(hub("model.decoder_from", &d)?);
        }
        Ok(cfg)
    }

    /// Parses and validates TOML text (paths left as written).
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| {
            let m = e.message().trim_end().replace('\n', " ");
            // An unknown model.kind reads as `validate`'s errors do: one line naming the key.
            if m.starts_with("model.kind:") {
                return anyhow!("{m}");
            }
            // One line: where, and what (toml's own Display quotes the line below a caret).
            match e.span().and_then(|s| text.get(..s.start)) {
                Some(before) => {
                    let line = before.matches('\n').count() + 1;
                    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                    // The line itself names the key; control characters would break the one line.
                    let src: String = text.lines().nth(line - 1).unwrap_or("").trim().chars().take(80).collect();
                    let src: String = src.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect();
                    anyhow!("TOML parse error at line {line}, column {col} ({src}): {m}")
                }
                None => anyhow!("TOML parse error: {m}"),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.output_dir);
        if !self.model.dir.as_os_str().is_empty() {
            fix(&mut self.model.dir);
        }
        self.data.datasets.iter_mut().for_each(fix);
        if let Some(c) = self.data.cache_dir.as_mut() {
            fix(c);
        }
        if let Some(d) = self.model.decoder_from.as_mut() {
            fix(d);
        }
        if let Some(d) = self.model.init_from.as_mut().filter(|d| d.as_os_str() != "default") {
            fix(d);
        }
    }

    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<()> {
        fn pos(key: &str, v: f64) -> Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("{key}: must be a finite number > 0 (got {v})");
            }
            Ok(())
        }
        fn nonneg(key: &str, v: f64) -> Result<()> {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{key}: must be a finite number >= 0 (got {v})");
            }
            Ok(())
        }
        fn unit_open(key: &str, v: f64) -> Result<()> {
            if !(v > 0.0 && v < 1.0) {
                bail!("{key}: must be in (0, 1) (got {v})");
            }
            Ok(())
        }
        if self.output_dir.as_os_str().is_empty() {
            bail!("output_dir: must not be empty");
        }
        use ModelKind::{BiomedClipSeg, ClipSeg, Cris, TextUNet, UNet};
        let seg = self.model.kind.model_kind();
        if self.model.dir.as_os_str().is_empty()
            && !matches!(seg, Some(TextUNet | UNet))
            && self.model.init_from.is_none()
        {
            bail!("model.dir: must not be empty");
        }
        for f in &self.model.freeze {
            if !FREEZE_PARTS.contains(&f.as_str()) {
                bail!("model.freeze: unknown part '{f}' (expected some of: {})", FREEZE_PARTS.join(", "));
            }
        }
        if FREEZE_PARTS.iter().all(|p| self.model.freeze.iter().any(|f| f == p)) {
            bail!("model.freeze: everything is frozen, nothing would train");
        }
        if self.data.datasets.is_empty() {
            bail!("data.datasets: must list at least one dataset directory");
        }
        if self.data.prompts.is_empty() {
            bail!("data.prompts: must list at least one prompt key (e.g. \"p0\")");
        }
        if let Some(p) = self.data.prompts.iter().find(|p| p.trim().is_empty()) {
            bail!("data.prompts: empty prompt key {p:?}");
        }
        if !(16..=4096).contains(&self.data.image_size) {
            bail!("data.image_size: must be between 16 and 4096 (got {})", self.data.image_size);
        }
        if !(0.0..1.0).contains(&self.data.negative_prompts) {
            bail!("data.negative_prompts: must be in [0, 1) (got {})", self.data.negative_prompts);
        }
        let textunet_only =
            [("data.negative_prompts", self.data.negative_prompts > 0.0), ("data.flips", self.data.flips)];
        if let Some((key, _)) = textunet_only.iter().find(|(_, on)| *on && seg != Some(TextUNet)) {
            bail!("{key}: only the textunet model trains with them (model.kind is '{}')", self.model.kind);
        }
        if self.data.feature_cache && !self.model.freeze.iter().any(|f| f == "vision") {
            bail!("data.feature_cache: needs the vision encoder frozen (add \"vision\" to model.freeze or set feature_cache = false)");
        }
        let t = &self.train;
        if t.epochs == 0 {
            bail!("train.epochs: must be at least 1");
        }
        if t.min_epochs > t.epochs {
            bail!("train.min_epochs: {} is more than train.epochs ({})", t.min_epochs, t.epochs);
        }
        if t.batch_size == 0 {
            bail!("train.batch_size: must be at least 1");
        }
        pos("train.lr", t.lr)?;
        nonneg("train.weight_decay", t.weight_decay)?;
        if !(0.0..1.0).contains(&t.betas[0]) || !(0.0..1.0).contains(&t.betas[1]) {
            bail!("train.betas: both must be in [0, 1) (got {:?})", t.betas);
        }
        pos("train.eps", t.eps)?;
        nonneg("train.grad_clip", t.grad_clip)?;
        let s = &self.scheduler;
        unit_open("scheduler.factor", s.factor)?;
        nonneg("scheduler.threshold", s.threshold)?;
        nonneg("scheduler.min_lr", s.min_lr)?;
        let l = &self.loss;
        nonneg("loss.dice_weight", l.dice_weight)?;
        nonneg("loss.bce_weight", l.bce_weight)?;
        if l.kind == LossName::Contrastive && seg != Some(Cris) {
            bail!("loss.kind: 'contrastive' is CRIS's loss (model.kind = \"cris\")");
        }
        if self.model.channels.is_some() && !matches!(seg, Some(UNet | TextUNet)) {
            bail!("model.channels: only for unet and textunet");
        }
        if let Some(d) = &self.model.init_from {
            if seg.is_none() {
                bail!("model.init_from: not for {} (segmentation models only)", self.model.kind);
            }
            if d.as_os_str().is_empty() {
                bail!("model.init_from: must not be empty (a model directory or \"default\")");
            }
            if matches!(seg, Some(ClipSeg | BiomedClipSeg | Cris)) {
                if !self.model.dir.as_os_str().is_empty() {
                    bail!("model.dir: not with model.init_from (the model, encoders included, is that directory's)");
                }
                if self.model.decoder_from.is_some() {
                    bail!("model.decoder_from: not with model.init_from (the decoder starts from that directory's)");
                }
            }
            if self.model.channels.is_some() {
                bail!("model.channels: not with model.init_from (the architecture is that model's)");
            }
        }
        if self.model.presence && seg != Some(TextUNet) {
            bail!("model.presence: only for textunet (model.kind is '{}')", self.model.kind);
        }
        nonneg("loss.presence_weight", l.presence_weight)?;
        nonneg("train.ema", t.ema)?;
        if t.ema >= 1.0 {
            bail!("train.ema: must be in [0, 1) (got {})", t.ema);
        }
        if s.kind == SchedulerKind::Plateau && s.warmup_epochs > 0 {
            bail!("scheduler.warmup_epochs: only with scheduler.kind = \"cosine\"");
        }
        if s.kind == SchedulerKind::Cosine && s.warmup_epochs >= t.epochs {
            bail!("scheduler.warmup_epochs: {} is not less than train.epochs ({})", s.warmup_epochs, t.epochs);
        }
        if s.min_lr > t.lr {
            bail!("scheduler.min_lr: {} is more than train.lr ({})", s.min_lr, t.lr);
        }
        let a = &self.augment;
        if !(a.scale[0].is_finite() && a.scale[0] > 0.0 && a.scale[1].is_finite() && a.scale[0] <= a.scale[1]) {
            bail!("augment.scale: must be [min, max] with 0 < min <= max (got {:?})", a.scale);
        }
        if !(0.0..=180.0).contains(&a.rotate) {
            bail!("augment.rotate: must be in [0, 180] degrees (got {})", a.rotate);
        }
        if !(0.0..0.5).contains(&a.translate) {
            bail!("augment.translate: must be in [0, 0.5) (got {})", a.translate);
        }
        for (key, v) in [
            ("augment.brightness", a.brightness),
            ("augment.contrast", a.contrast),
            ("augment.saturation", a.saturation),
        ] {
            if !(0.0..1.0).contains(&v) {
                bail!("{key}: must be in [0, 1) (got {v})");
            }
        }
        if !a.is_off() && seg != Some(TextUNet) {
            bail!("augment: only the textunet model trains with it (model.kind is '{}')", self.model.kind);
        }
        if self.model.decoder_from.is_some() && !matches!(seg, Some(ClipSeg | BiomedClipSeg)) {
            bail!("model.decoder_from: only for clipseg and biomedclipseg (a CLIPSeg decoder)");
        }
        if l.kind == LossName::DiceBce && l.dice_weight + l.bce_weight == 0.0 {
            bail!("loss.dice_weight, loss.bce_weight: both are 0");
        }
        nonneg("early_stopping.min_delta", self.early_stopping.min_delta)?;
        Ok(())
    }

    pub fn loss_kind(&self) -> LossKind {
        match self.loss.kind {
            LossName::Dice => LossKind::Dice,
            LossName::Bce | LossName::Contrastive => LossKind::Bce,
            LossName::DiceBce => {
                LossKind::DiceBce { dice_weight: self.loss.dice_weight, bce_weight: self.loss.bce_weight }
            }
        }
    }

    pub fn adamw(&self) -> AdamWParams {
        let t = &self.train;
        AdamWParams { lr: t.lr, beta1: t.betas[0], beta2: t.betas[1], eps: t.eps, weight_decay: t.weight_decay }
    }

    /// Where the feature cache lives.
    pub fn cache_dir(&self) -> PathBuf {
        self.data.cache_dir.clone().unwrap_or_else(|| self.output_dir.join("feature_cache"))
    }

    pub fn is_frozen(&self, part: &str) -> bool {
        self.model.freeze.iter().any(|f| f == part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "output_dir = \"out\"\n[model]\nkind = \"clipseg\"\ndir = \"m\"\n[data]\ndatasets = [\"d\"]\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = TrainConfig::parse(MIN).unwrap();
        assert_eq!(c.seed, 42);
        assert_eq!(c.data.prompts.len(), 10);
        assert_eq!(c.train, TrainParams::default());
        assert_eq!(c.loss_kind(), LossKind::DiceBce { dice_weight: 1.0, bce_weight: 0.2 });
        assert_eq!(c.cache_dir(), PathBuf::from("out/feature_cache"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let cases = [
            (format!("{MIN}[train]\nlrr = 1.0\n"), "lrr"),
            (format!("{MIN}[train]\nlr = -1.0\n"), "train.lr"),
            (format!("{MIN}[train]\nbatch_size = 0\n"), "train.batch_size"),
            (format!("{MIN}[scheduler]\nfactor = 1.5\n"), "scheduler.factor"),
            (format!("{MIN}[loss]\nkind = \"focal\"\n"), "focal"),
            (format!("{MIN}[train]\nepochs = \"ten\"\n"), "epochs"),
            (MIN.replace("clipseg", "fcn"), "model.kind"),
            (format!("{MIN}[early_stopping]\nmin_delta = -1.0\n"), "early_stopping.min_delta"),
            (MIN.replace("output_dir = \"out\"\n", ""), "output_dir"),
            (format!("bogus = 1\n{MIN}"), "bogus"),
        ];
        for (text, key) in cases {
            let e = TrainConfig::parse(&text).unwrap_err().to_string();
            assert!(e.contains(key), "error for {key} does not name it: {e}");
        }
    }

    #[test]
    fn load_resolves_relative_paths() {
        let dir = std::env::temp_dir().join(format!("vlsm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, MIN).unwrap();
        let c = TrainConfig::load(&p).unwrap();
        assert_eq!(c.output_dir, dir.join("out"));
        assert_eq!(c.data.datasets, vec![dir.join("d")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
