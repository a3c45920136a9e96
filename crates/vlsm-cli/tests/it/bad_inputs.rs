//! The bad-input corpus (#17): every file of `tests/fixtures/bad_inputs/` (written by
//! `tools/make_bad_inputs.py`; `expected.tsv` says how each is used and what its error must say),
//! plus cases made here (decompression bombs, FIFOs, directories, /dev/zero, a missing file, a
//! 120 KB prompt), through `vlsm segment`, `vlsm imgproc` and `vlsm eval`. Each run must:
//! not panic (exit code not 101, no "panicked") nor die by a signal (abort), exit non-zero with
//! one line on stderr that names the file and the problem, leave `--out` empty, and peak under
//! `MAX_RSS` (measured with wait4). "OK" cases must succeed and write only under `--out`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{fx, tiny_clipseg};

#[path = "../../../vlsm/tests/it/support/bombs.rs"]
mod bombs;

/// Peak resident memory allowed for one run (the tiny model's runs take about 100 MB).
const MAX_RSS_BYTES: u64 = 1 << 30;

/// The largest peak RSS of any run (reported).
static PEAK_RSS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Clone, Debug)]
enum Input {
    File(PathBuf),
    Bytes(Vec<u8>),
    Fifo,
    Dir,
    DevZero,
    Missing,
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    role: String,
    commands: Vec<String>,
    /// What the error must contain; "OK": the run must succeed.
    expect: String,
    input: Input,
}

fn table() -> Vec<Case> {
    let dir = fx("bad_inputs");
    let text = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "expected.tsv: {l:?}");
            let path = dir.join(f[0]);
            assert!(path.exists(), "expected.tsv names {} which is missing", f[0]);
            Case {
                name: f[0].into(),
                role: f[1].into(),
                commands: f[2].split(' ').map(String::from).collect(),
                expect: f[3].into(),
                input: Input::File(path),
            }
        })
        .collect()
}

/// Cases too big to commit, or that are not regular files.
fn generated() -> Vec<Case> {
    let c = |name: &str, role: &str, commands: &str, expect: &str, input: Input| Case {
        name: name.into(),
        role: role.into(),
        commands: commands.split(' ').map(String::from).collect(),
        expect: expect.into(),
        input,
    };
    let all = "segment imgproc eval";
    vec![
        // 20000 x 20000 x 21 voxels claimed, 512 MiB of zeros present in 600 KB.
        c(
            "nifti_gz_bomb.nii.gz",
            "image",
            "eval",
            "limit",
            Input::Bytes(bombs::nifti_gz_bomb(&[20000, 20000, 21], 512)),
        ),
        c(
            "dicom_deflate_bomb.dcm",
            "image",
            "eval",
            "limit",
            Input::Bytes(
                bombs::DeflatedDicom { pixel_bytes: Some(64 << 20), ..bombs::DeflatedDicom::new(20000, 20000, 16) }
                    .bytes(),
            ),
        ),
        c("fifo.png", "image", all, "not a regular file", Input::Fifo),
        c("dir.png", "image", all, "is a directory", Input::Dir),
        c("zero.png", "image", "segment imgproc", "not a regular file", Input::DevZero),
        c("zero_mask.png", "mask", "segment", "not a regular file", Input::DevZero),
        c("fifo_mask.png", "mask", "segment eval", "not a regular file", Input::Fifo),
        c("missing.png", "image", "segment imgproc", "", Input::Missing),
        c("prompt_overlong.txt", "prompt", "segment", "OK", Input::Bytes("polyp ".repeat(20000).into_bytes())),
    ]
}

/// The file's extension as the readers see it (`nii.gz` whole).
fn ext(name: &str) -> &str {
    name.split_once('.').map_or("", |(_, e)| e)
}

/// Puts the case's input at `dest`; returns the path to pass (`/dev/zero` itself for DevZero).
fn place(input: &Input, dest: &Path) -> PathBuf {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    match input {
        Input::File(p) if p.is_dir() => {
            copy_dir(p, dest);
        }
        Input::File(p) => {
            std::fs::copy(p, dest).unwrap();
        }
        Input::Bytes(b) => std::fs::write(dest, b).unwrap(),
        Input::Fifo => assert!(Command::new("mkfifo").arg(dest).status().unwrap().success()),
        Input::Dir => std::fs::create_dir_all(dest).unwrap(),
        Input::DevZero => return PathBuf::from("/dev/zero"),
        Input::Missing => {}
    }
    dest.to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn good_image(dir: &Path) -> PathBuf {
    let p = dir.join("good.png");
    if !p.exists() {
        image::RgbImage::from_fn(48, 32, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, 90])).save(&p).unwrap();
    }
    p
}

fn good_mask(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(48, 32, |x, y| image::Luma([if (10..30).contains(&x) && y > 8 { 255 } else { 0 }]))
        .save(path)
        .unwrap();
}

/// A one-record test split: `image` and `mask` name the record's files; the case's `role`
/// (image, mask or anns) is placed by the caller, the others are good files.
fn dataset(root: &Path, image: &str, mask: &str, role: &str) {
    for d in ["images", "masks", "anns"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    if role != "image" {
        std::fs::copy(good_image(root.parent().unwrap()), root.join("images/im0.png")).unwrap();
    }
    if role != "mask" {
        good_mask(&root.join("masks/im0_mask.png"));
    }
    let rec = serde_json::json!([{"img_name": image, "mask_name": mask, "prompts": {"p0": "", "p1": "a square"}}]);
    std::fs::write(root.join("anns/test.json"), rec.to_string()).unwrap();
}

struct Run {
    code: Option<i32>,
    stderr: String,
    max_rss: Option<u64>,
}

/// Runs `vlsm ARGS`, stderr to a file, and its peak RSS from wait4 (Linux with glibc).
fn run(args: &[OsString], err_file: &Path) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlsm"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    cmd.stderr(Stdio::from(std::fs::File::create(err_file).unwrap()));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let (code, max_rss) = {
        // Reaped by wait4 below, which also gives its peak RSS.
        #[allow(clippy::zombie_processes)]
        let child = cmd.spawn().unwrap();
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten by wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child; `status` and `usage` are valid for writes.
        let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        (code, Some(usage.ru_maxrss as u64 * 1024))
    };
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let (code, max_rss) = (cmd.status().unwrap().code(), None);
    Run { code, stderr: std::fs::read_to_string(err_file).unwrap_or_default(), max_rss }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs one case through one command in its own folder; returns what went wrong.
fn check(case: &Case, command: &str, work: &Path) -> Vec<String> {
    let s = |p: &Path| p.as_os_str().to_os_string();
    let o = |x: &str| OsString::from(x);
    let out = work.join("out");
    let good = good_image(work);
    let model = tiny_clipseg();
    // What the error must name.
    let mut named = case.name.clone();
    let args: Vec<OsString> = match (case.role.as_str(), command) {
        ("image", "segment" | "imgproc") => {
            let p = place(&case.input, &work.join("in").join(&case.name));
            named = p.display().to_string();
            if command == "segment" {
                vec![o("segment"), s(&p), o("-p"), o("polyp"), o("--model"), s(&model), o("--out"), s(&out)]
            } else {
                vec![o("imgproc"), o("gray"), s(&p), s(&out.join("o.png"))]
            }
        }
        ("mask", "segment") => {
            let p = place(&case.input, &work.join("in").join(&case.name));
            named = p.display().to_string();
            let (g, m) = (s(&good), s(&model));
            vec![o("segment"), g.clone(), o("-p"), o("polyp"), o("--prompt-image"), g, o("--prompt-mask"), s(&p)]
                .into_iter()
                .chain([o("--model"), m, o("--out"), s(&out)])
                .collect()
        }
        ("image" | "mask" | "anns", "eval") => {
            let ds = work.join("ds");
            let (image, mask) = match case.role.as_str() {
                "image" => (format!("im0.{}", ext(&case.name)), "im0_mask.png".to_string()),
                "mask" => ("im0.png".to_string(), format!("im0_mask.{}", ext(&case.name))),
                _ => ("im0.png".to_string(), "im0_mask.png".to_string()),
            };
            dataset(&ds, &image, &mask, &case.role);
            named = match case.role.as_str() {
                "image" => {
                    place(&case.input, &ds.join("images").join(&image));
                    image
                }
                "mask" => {
                    place(&case.input, &ds.join("masks").join(&mask));
                    mask
                }
                _ => {
                    place(&case.input, &ds.join("anns/test.json"));
                    "test.json".into()
                }
            };
            vec![o("eval"), o("--model"), s(&model), o("--data"), s(&ds), o("--prompt"), o("p1"), o("--out"), s(&out)]
        }
        ("model", "segment") => {
            let dir = work.join(&case.name);
            copy_dir(&model, &dir);
            place(&case.input, &dir);
            vec![o("segment"), s(&good), o("-p"), o("polyp"), o("--model"), s(&dir), o("--out"), s(&out)]
        }
        ("prompt", "segment") => {
            let text = match &case.input {
                Input::File(p) => std::fs::read_to_string(p).unwrap(),
                Input::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
                other => panic!("{other:?}"),
            };
            vec![o("segment"), s(&good), o("-p"), OsString::from(text), o("--model"), s(&model), o("--out"), s(&out)]
        }
        (role, cmd) => return vec![format!("no way to run a {role} through {cmd}")],
    };
    let r = run(&args, &work.join("stderr.txt"));
    let err = r.stderr.trim();
    let mut bad = Vec::new();
    PEAK_RSS.fetch_max(r.max_rss.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
    if let Some(rss) = r.max_rss {
        if rss > MAX_RSS_BYTES {
            bad.push(format!("peak RSS {} MB", rss >> 20));
        }
    }
    if err.contains("panicked") || r.code == Some(101) {
        bad.push("panicked".into());
    }
    if r.code.is_none() {
        bad.push("killed by a signal (abort?)".into());
    }
    if case.expect == "OK" {
        if r.code != Some(0) {
            bad.push(format!("exit {:?}, expected success", r.code));
        }
        if files_under(&out).is_empty() {
            bad.push("nothing written to --out".into());
        }
    } else {
        if r.code == Some(0) {
            bad.push("exit 0".into());
        }
        if err.lines().count() != 1 {
            bad.push(format!("{} lines on stderr", err.lines().count()));
        }
        if !err.contains(&named) {
            bad.push(format!("does not name {named}"));
        }
        if !err.contains(&case.expect) {
            bad.push(format!("does not say {:?}", case.expect));
        }
        let written = files_under(&out);
        if !written.is_empty() {
            bad.push(format!("wrote {written:?}"));
        }
    }
    bad.into_iter().map(|b| format!("{} via {command}: {b} (stderr: {err:?})", case.name)).collect()
}

#[test]
fn every_bad_input_fails_cleanly_through_every_command() {
    let cases: Vec<Case> = table().into_iter().chain(generated()).collect();
    let runs: Vec<(Case, String)> =
        cases.iter().flat_map(|c| c.commands.iter().map(move |cmd| (c.clone(), cmd.clone()))).collect();
    let tmp = tempfile::tempdir().unwrap();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((case, cmd)) = runs.get(i) else { break };
                let work = tmp.path().join(format!("run{i}"));
                std::fs::create_dir_all(&work).unwrap();
                let bad = check(case, cmd, &work);
                failures.lock().unwrap().extend(bad);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let peak = PEAK_RSS.load(std::sync::atomic::Ordering::SeqCst) >> 20;
    eprintln!(
        "bad-input corpus: {} cases, {} runs, {} failures, peak RSS {peak} MB",
        cases.len(),
        runs.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} of {} runs went wrong:\n{}", failures.len(), runs.len(), failures.join("\n"));
    // The corpus is what the issue asked for: dozens of files, every role and command.
    assert!(cases.len() >= 60 && runs.len() >= 110, "{} cases, {} runs", cases.len(), runs.len());
}
