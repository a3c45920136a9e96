//! `vlsm segment DIR` and `--jobs FILE.json`: batch runs over folders (2-D images, volumes and
//! DICOM series) that mirror the input tree under `--out`, skip inputs whose outputs all exist (a
//! killed run resumes), take every N-th input with `--shard I/N`, go on past bad files and end
//! with a `summary.json`.
//!
//! A folder whose own files hold two or more DICOM images (any file name; found by their magic
//! bytes), all of one Series Instance UID, is one input: the series, read as `--series` reads it
//! (sub-folders included) and named after the folder. Files of several series in one folder are
//! taken one by one as 2-D images (those with an image extension).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use vlsm::io::{self, FileKind};

/// One input: where it is, where its outputs go (`<out dir>/<stem>`), its own prompts.
pub(crate) struct Item {
    pub input: PathBuf,
    pub base: PathBuf,
    pub prompts: Option<Vec<String>>,
    /// `input` is a folder holding one DICOM series.
    pub series: bool,
}

/// What a folder walk finds.
enum Found {
    File(PathBuf),
    /// A folder holding one DICOM series.
    Series(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    image: PathBuf,
    #[serde(default)]
    prompts: Option<Vec<String>>,
}

/// File names a folder walk takes (case-insensitive).
const EXTENSIONS: [&str; 10] = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".nii", ".nii.gz"];

fn wanted(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !n.starts_with('.') && EXTENSIONS.iter().any(|e| n.ends_with(e))
}

/// A file that may be DICOM: a `.dcm`/`.dicom` name, or one without an image extension (series
/// files are often named `IM0001` or by their UID).
fn may_be_dicom(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !n.starts_with('.') && (n.ends_with(".dcm") || n.ends_with(".dicom") || !wanted(&n))
}

/// Whether `files` (one folder's own files) hold one DICOM series: two or more DICOM images, all
/// of one non-empty Series Instance UID. Non-image DICOM (a DICOMDIR, a report) does not count;
/// an unreadable DICOM file does not either (reading the series names it).
fn one_series(files: &[PathBuf]) -> bool {
    let mut uid: Option<String> = None;
    let mut images = 0;
    for p in files {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !may_be_dicom(&name) || !matches!(io::file_kind(p), Ok(FileKind::Dicom)) {
            continue;
        }
        match io::dicom_series_uid(p) {
            Ok(Some(u)) if u.is_empty() => return false,
            Ok(Some(u)) => {
                if uid.as_ref().is_some_and(|v| *v != u) {
                    return false;
                }
                uid = Some(u);
                images += 1;
            }
            Ok(None) | Err(_) => {}
        }
    }
    images >= 2
}

/// Files and series folders under `dir` (sorted by name; into sub-folders with `recursive`;
/// hidden entries and symbolic links to folders skipped). A series folder is taken whole: its
/// sub-folders are not walked.
fn walk(dir: &Path, recursive: bool, out: &mut Vec<Found>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| anyhow!("{}: cannot list: {e}", dir.display()))?;
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    let files: Vec<PathBuf> = entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()) && e.path().is_file())
        .map(|e| e.path())
        .collect();
    if one_series(&files) {
        out.push(Found::Series(dir.to_path_buf()));
        return Ok(());
    }
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if recursive && !name.starts_with('.') {
                walk(&e.path(), recursive, out)?;
            }
        } else if wanted(&name) && e.path().is_file() {
            out.push(Found::File(e.path()));
        }
    }
    Ok(())
}

/// The items of a batch run: from `--jobs`, else from the inputs (folders walked; each folder's
/// tree mirrored under `out`, files given by name straight under it).
pub(crate) fn collect(
    inputs: &[PathBuf],
    jobs: Option<&Path>,
    recursive: bool,
    out: &Path,
    stem: impl Fn(&Path) -> String,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    if let Some(j) = jobs {
        let p = j.display();
        let text = std::fs::read_to_string(j).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
        let list: Vec<Job> = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{p}: not a list of {{\"image\": ..., \"prompts\": [...]}}: {e}"))?;
        let root = j.parent().map(Path::to_path_buf).unwrap_or_default();
        for job in list {
            let input = if job.image.is_absolute() { job.image.clone() } else { root.join(&job.image) };
            // Relative images keep their folders under --out; absolute ones go straight in it.
            let rel_dir = if job.image.is_absolute() { PathBuf::new() } else { parent_of(&job.image) };
            if rel_dir.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                bail!("{p}: image {:?} leaves the jobs file's folder; give an absolute path", job.image);
            }
            if matches!(&job.prompts, Some(v) if v.is_empty()) {
                bail!("{p}: image {:?} has an empty prompt list", job.image);
            }
            // A folder is a DICOM series, named after the folder.
            let series = input.is_dir();
            let name = if series { crate::segment_series::series_stem(&input) } else { stem(&input) };
            let base = out.join(rel_dir).join(name);
            items.push(Item { input, base, prompts: job.prompts, series });
        }
    } else {
        for i in inputs {
            if i.is_dir() {
                let mut found = Vec::new();
                walk(i, recursive, &mut found)?;
                for f in found {
                    let (f, series) = match f {
                        Found::File(f) => (f, false),
                        Found::Series(d) => (d, true),
                    };
                    let rel = f.strip_prefix(i).map(parent_of).unwrap_or_default();
                    let name = if series { crate::segment_series::series_stem(&f) } else { stem(&f) };
                    items.push(Item { base: out.join(rel).join(name), input: f, prompts: None, series });
                }
            } else {
                items.push(Item { input: i.clone(), base: out.join(stem(i)), prompts: None, series: false });
            }
        }
    }
    let mut seen: HashMap<&Path, &Path> = HashMap::new();
    for it in &items {
        if let Some(prev) = seen.insert(&it.base, &it.input) {
            bail!(
                "{} and {} would both be written as {}.*, so their outputs would collide; rename one",
                prev.display(),
                it.input.display(),
                it.base.display()
            );
        }
    }
    Ok(items)
}

fn parent_of(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `--shard I/N`: (I, N) with 0 <= I < N.
pub(crate) fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || anyhow!("--shard {s:?}: give I/N with 0 <= I < N (e.g. 0/4), as a job array index");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// What happened to each input.
#[derive(Default, serde::Serialize)]
pub(crate) struct Summary {
    pub shard: Option<String>,
    pub inputs: usize,
    pub done: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<Failure>,
}

#[derive(serde::Serialize)]
pub(crate) struct Failure {
    pub image: String,
    pub error: String,
}

/// An error as the one line `main` prints.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    let root = e.root_cause().to_string();
    if root != msg && !msg.contains(&root) {
        msg = format!("{msg}: {root}");
    }
    msg.replace('\n', " ")
}

/// Runs `process` on every item of the shard, recording done/skipped/failed; writes the summary
/// (`summary.json`, or `summary.I-of-N.json` for a shard) and fails when any input failed.
pub(crate) fn run(
    items: Vec<Item>,
    shard: Option<(usize, usize)>,
    out: &Path,
    outputs: impl Fn(&Item, FileKind) -> Vec<PathBuf>,
    mut process: impl FnMut(&Item, FileKind) -> Result<()>,
) -> Result<()> {
    let total = items.len();
    let mine: Vec<Item> = match shard {
        Some((i, n)) => items.into_iter().enumerate().filter(|(k, _)| k % n == i).map(|(_, it)| it).collect(),
        None => items,
    };
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output directory", out.display()))?;
    let mut dirs: Vec<&Path> = mine.iter().filter_map(|it| it.base.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        crate::segment_cmd::clean_stale_temp_files(d);
    }
    let mut s = Summary { shard: shard.map(|(i, n)| format!("{i}/{n}")), inputs: mine.len(), ..Default::default() };
    let file = match shard {
        Some((i, n)) => format!("summary.{i}-of-{n}.json"),
        None => "summary.json".to_string(),
    };
    let path = out.join(file);
    // Rewritten after every input, so a killed run leaves an up-to-date summary.
    let save = |s: &Summary| -> Result<()> { io::write_atomic(&path, serde_json::to_string_pretty(s)?.as_bytes()) };
    let n = mine.len();
    for (k, it) in mine.iter().enumerate() {
        let name = it.input.display().to_string();
        let kind = if it.series { Ok(FileKind::Dicom) } else { io::file_kind(&it.input) };
        let result = kind.and_then(|kind| {
            let outs = outputs(it, kind);
            if !outs.is_empty() && outs.iter().all(|o| o.is_file()) {
                return Ok(false);
            }
            process(it, kind).map(|_| true)
        });
        let what = match result {
            Ok(true) => {
                s.done.push(name.clone());
                "done"
            }
            Ok(false) => {
                s.skipped.push(name.clone());
                "skipped (outputs exist)"
            }
            Err(e) => {
                s.failed.push(Failure { image: name.clone(), error: one_line(&e) });
                "FAILED"
            }
        };
        eprintln!("[{}/{n}] {what}: {name}", k + 1);
        save(&s)?;
    }
    save(&s)?;
    eprintln!(
        "{} done, {} skipped, {} failed of {} input(s){}; summary in {}",
        s.done.len(),
        s.skipped.len(),
        s.failed.len(),
        s.inputs,
        shard.map(|(i, n)| format!(" (shard {i}/{n} of {total})")).unwrap_or_default(),
        path.display()
    );
    if !s.failed.is_empty() {
        bail!("{} of {} input(s) failed (the reasons are in {})", s.failed.len(), s.inputs, path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards() {
        assert_eq!(parse_shard("0/4").unwrap(), (0, 4));
        assert_eq!(parse_shard(" 3 / 4 ").unwrap(), (3, 4));
        for bad in ["4/4", "1/0", "1", "a/b", "-1/3", ""] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
