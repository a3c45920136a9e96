//! File names from a dataset's anns must stay inside the dataset.
//!
//! An `img_name` or `mask_name` is untrusted input: a record saying `../../../../tmp/x.png` or
//! `/etc/passwd` must neither be read nor (in `vlsm eval`, which names its predictions after
//! `mask_name`) be written. Every reader of anns resolves names through [`resolve_inside`].

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};

/// `name` as a relative path with `.` and `..` resolved, or an error when it is empty, absolute,
/// holds a NUL, or climbs above the folder it is relative to (`a/../b.png` is fine,
/// `../b.png` is not). The result has only normal components.
pub fn safe_relative(name: &str) -> Result<PathBuf> {
    if name.is_empty() {
        bail!("name is empty");
    }
    if name.contains('\0') {
        bail!("name {name:?} contains a NUL byte");
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    bail!("name {name:?} leads outside its folder (`..`)");
                }
            }
            Component::RootDir | Component::Prefix(_) => bail!("name {name:?} is an absolute path"),
        }
    }
    if out.as_os_str().is_empty() {
        bail!("name {name:?} names the folder itself, not a file");
    }
    Ok(out)
}

/// Fails unless `path`, with every symlink followed, is inside `dir` (also with its symlinks
/// followed). A symlink inside the dataset may point to another place inside it, not outside.
pub fn check_inside(dir: &Path, path: &Path) -> Result<()> {
    let d = dir.canonicalize().map_err(|e| anyhow::anyhow!("{}: cannot resolve: {e}", dir.display()))?;
    let p = path.canonicalize().map_err(|e| anyhow::anyhow!("{}: cannot resolve: {e}", path.display()))?;
    if !p.starts_with(&d) {
        bail!("{} resolves to {}, outside {}", path.display(), p.display(), dir.display());
    }
    Ok(())
}

/// `dir/name` after checking that `name` is a [`safe_relative`] path. Whether the file exists
/// is not checked; once it does, [`check_inside`] tells whether symlinks keep it inside.
pub fn resolve_inside(dir: &Path, name: &str) -> Result<PathBuf> {
    Ok(dir.join(safe_relative(name)?))
}
