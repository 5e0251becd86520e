//! Output files and directories: checked before any work starts, written so that no crash,
//! error or bad record leaves a half-written file, and never over an input.
//!
//! - [`check_paths`] compares every path a command names, after resolving symbolic links
//!   (and by device and inode, so hard links count too): an output may not be an input, a
//!   store, another output, or hold an input inside the directory it replaces; each
//!   output's directory must exist and take a new file.
//! - [`OutputFile`] writes one output by what the path is:
//!   - `-`: standard output;
//!   - an existing character device, FIFO or socket: written in place (`/dev/null`, a pipe);
//!   - a symbolic link: resolved, and its target written, so the link stays a link;
//!   - a regular file, or nothing yet: a temporary file beside the target, renamed over it
//!     on [`OutputFile::commit`] after a sync. A new file gets mode `0666 & !umask`; an
//!     existing one keeps its mode.
//! - Temporary files and directories are named `.NAME.glmix-PID-TAG.tmp`. One whose process
//!   is gone (a run killed by `kill -9`) is removed by the next run that writes `NAME` in
//!   the same directory; those of running processes are left alone.

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a path named on the command line is to the command, for [`check_paths`].
#[derive(Debug, Clone, Copy)]
pub struct PathRole<'a> {
    /// The option that named it, for messages (`--out`).
    pub option: &'a str,
    pub path: &'a Path,
    pub kind: PathKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Read only (`-` is standard input).
    Input,
    /// A file written whole (`-` is standard output).
    Output,
    /// A directory written whole, replacing what was there.
    OutputDir,
    /// A store read and updated in place.
    Store,
}

impl<'a> PathRole<'a> {
    pub fn input(option: &'a str, path: &'a Path) -> Self {
        PathRole {
            option,
            path,
            kind: PathKind::Input,
        }
    }
    pub fn output(option: &'a str, path: &'a Path) -> Self {
        PathRole {
            option,
            path,
            kind: PathKind::Output,
        }
    }
    pub fn output_dir(option: &'a str, path: &'a Path) -> Self {
        PathRole {
            option,
            path,
            kind: PathKind::OutputDir,
        }
    }
    pub fn store(option: &'a str, path: &'a Path) -> Self {
        PathRole {
            option,
            path,
            kind: PathKind::Store,
        }
    }

    fn writes(&self) -> bool {
        self.kind != PathKind::Input
    }

    fn describe(&self) -> String {
        format!("{} {}", self.option, self.path.display())
    }
}

fn is_std_stream(path: &Path) -> bool {
    path == Path::new("-")
}

/// Where a path leads: its resolved location and, when it exists, its device and inode.
struct Identity {
    resolved: PathBuf,
    inode: Option<(u64, u64)>,
}

impl Identity {
    fn of(path: &Path) -> Result<Self> {
        let resolved = resolve(path).map_err(|e| Error::io(path, e))?;
        let inode = fs::metadata(&resolved).ok().map(|m| (m.dev(), m.ino()));
        Ok(Identity { resolved, inode })
    }

    fn same_as(&self, other: &Identity) -> bool {
        match (self.inode, other.inode) {
            (Some(a), Some(b)) => a == b,
            _ => self.resolved == other.resolved,
        }
    }
}

/// Check the paths of one command before it starts any work (see the module doc). Fails
/// with a message naming both options and the path.
pub fn check_paths(roles: &[PathRole]) -> Result<()> {
    let mut named = Vec::with_capacity(roles.len());
    for role in roles {
        if is_std_stream(role.path) {
            if role.writes()
                && roles.iter().any(|r| {
                    r.kind == PathKind::Output && is_std_stream(r.path) && !std::ptr::eq(r, role)
                })
            {
                return Err(Error::Config(format!(
                    "{} and another output both name standard output (-)",
                    role.option
                )));
            }
            continue;
        }
        named.push((role, Identity::of(role.path)?));
    }
    for (i, (a, ia)) in named.iter().enumerate() {
        for (b, ib) in &named[i + 1..] {
            if (a.writes() || b.writes()) && ia.same_as(ib) {
                return Err(Error::Config(format!(
                    "{} and {} are the same file; {}",
                    a.describe(),
                    b.describe(),
                    if a.writes() && b.writes() {
                        "give each output its own path"
                    } else {
                        "an output may not overwrite an input"
                    }
                )));
            }
            for ((dir, idir), (other, iother)) in [((a, ia), (b, ib)), ((b, ib), (a, ia))] {
                if dir.kind == PathKind::OutputDir && iother.resolved.starts_with(&idir.resolved) {
                    return Err(Error::Config(format!(
                        "{} lies inside {}, which is replaced as a whole",
                        other.describe(),
                        dir.describe()
                    )));
                }
            }
        }
    }
    for (role, identity) in &named {
        if matches!(role.kind, PathKind::Output | PathKind::OutputDir) {
            check_writable(role, &identity.resolved)?;
        }
    }
    Ok(())
}

/// An output's directory must exist and take a new file; an output file may not be a
/// directory.
fn check_writable(role: &PathRole, resolved: &Path) -> Result<()> {
    if let Ok(meta) = fs::metadata(resolved) {
        if role.kind == PathKind::Output && meta.is_dir() {
            return Err(Error::io(
                role.path,
                std::io::Error::new(ErrorKind::IsADirectory, "is a directory"),
            ));
        }
        if role.kind == PathKind::Output && !meta.is_file() {
            return Ok(()); // a device or a pipe, written in place
        }
    }
    // The error names the option too: the path alone may not say which output it is.
    let named = |e: std::io::Error| {
        let message = format!("{}: {e}", role.option);
        Error::io(role.path, std::io::Error::new(e.kind(), message))
    };
    let (dir, name) = split(resolved).map_err(named)?;
    let probe = create_temporary(&dir, &name, "probe", false).map_err(named)?;
    fs::remove_file(&probe.0).map_err(|e| Error::io(&probe.0, e))
}

/// `path` with every symbolic link along it resolved; a path that does not exist yet is
/// its resolved directory joined with its name.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            Ok(_) => return fs::canonicalize(&p),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let (dir, name) = split(&p)?;
                let dir = fs::canonicalize(&dir).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("directory {} does not exist", dir.display()),
                    )
                })?;
                return Ok(dir.join(name));
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// The directory (`.` for a bare name) and the file name of `path`.
fn split(path: &Path) -> std::io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(OsStr::to_str)
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_string()))
}

/// The name prefix of `name`'s temporary files.
fn temporary_prefix(name: &str) -> String {
    format!(".{name}.glmix-")
}

/// Remove the temporary files and directories of `name` in `dir` left by processes that
/// are gone. Only where `/proc` tells which processes run; errors are ignored (the next
/// run tries again).
fn remove_stale(dir: &Path, name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let prefix = temporary_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|r| r.ends_with(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || proc.join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

/// A fresh temporary file (or directory) for `name` in `dir`, named
/// `.NAME.glmix-PID-TAG-N.tmp`; a file is created with mode `0666 & !umask`.
fn create_temporary(
    dir: &Path,
    name: &str,
    tag: &str,
    directory: bool,
) -> std::io::Result<(PathBuf, Option<File>)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            "{}{}-{tag}-{n}.tmp",
            temporary_prefix(name),
            std::process::id()
        ));
        let made = if directory {
            fs::create_dir(&path).map(|()| None)
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path)
                .map(Some)
        };
        match made {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                let why = if dir.is_dir() {
                    // The OS's words ("Permission denied"): `ErrorKind`'s would say
                    // "entity not found", which reads as a glmix entity.
                    let os = e.to_string();
                    let os = os.split(" (os error").next().unwrap_or(&os);
                    format!("cannot create a file in {}: {os}", dir.display())
                } else {
                    format!("directory {} does not exist", dir.display())
                };
                return Err(std::io::Error::new(e.kind(), why));
            }
        }
    }
}

enum Target {
    Stdout(BufWriter<std::io::Stdout>),
    /// A device or pipe, written in place.
    InPlace(BufWriter<File>),
    /// A temporary file beside `target`, renamed over it on commit.
    Replace {
        temporary: PathBuf,
        target: PathBuf,
        writer: Option<BufWriter<File>>,
    },
}

/// One output file (see the module doc). Dropping it without [`OutputFile::commit`]
/// removes its temporary file, leaving the target as it was.
pub struct OutputFile {
    path: PathBuf,
    target: Target,
}

impl OutputFile {
    pub fn create(path: &Path) -> Result<Self> {
        let target = Self::open(path).map_err(|e| Error::io(path, e))?;
        Ok(OutputFile {
            path: path.to_path_buf(),
            target,
        })
    }

    fn open(path: &Path) -> std::io::Result<Target> {
        if is_std_stream(path) {
            return Ok(Target::Stdout(BufWriter::new(std::io::stdout())));
        }
        let resolved = resolve(path)?;
        let mode = match fs::metadata(&resolved) {
            Ok(m) if m.is_dir() => {
                return Err(std::io::Error::new(
                    ErrorKind::IsADirectory,
                    "is a directory",
                ))
            }
            Ok(m) if !m.is_file() => {
                let file = OpenOptions::new().write(true).open(&resolved)?;
                return Ok(Target::InPlace(BufWriter::with_capacity(1 << 20, file)));
            }
            Ok(m) => Some(m.permissions()),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (dir, name) = split(&resolved)?;
        remove_stale(&dir, &name);
        let (temporary, file) = create_temporary(&dir, &name, "out", false)?;
        let file = file.expect("a file was asked for");
        if let Some(mode) = mode {
            file.set_permissions(mode)?;
        }
        Ok(Target::Replace {
            temporary,
            target: resolved,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush; for a regular file, sync and rename into place.
    pub fn commit(mut self) -> Result<()> {
        let path = self.path.clone();
        let io = |e| Error::io(&path, e);
        match &mut self.target {
            Target::Stdout(w) => w.flush().map_err(io),
            Target::InPlace(w) => w.flush().map_err(io),
            Target::Replace {
                temporary,
                target,
                writer,
            } => {
                let file = writer
                    .take()
                    .expect("committed once")
                    .into_inner()
                    .map_err(|e| io(e.into_error()))?;
                file.sync_all().map_err(io)?;
                fs::rename(&temporary, &target).map_err(io)?;
                if let Some(dir) = target.parent() {
                    // The rename is durable once the directory is synced.
                    let _ = File::open(dir).and_then(|d| d.sync_all());
                }
                temporary.clear();
                Ok(())
            }
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.target {
            Target::Stdout(w) => w,
            Target::InPlace(w) => w,
            Target::Replace { writer, .. } => writer.as_mut().expect("not yet committed"),
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Target::Replace {
            temporary, writer, ..
        } = &mut self.target
        {
            if !temporary.as_os_str().is_empty() {
                drop(writer.take());
                let _ = fs::remove_file(&temporary);
            }
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer().flush()
    }
}

/// Write an output file with `fill`; a failing `fill` leaves the target as it was.
pub fn write_output(
    path: &Path,
    fill: impl FnOnce(&mut OutputFile) -> std::io::Result<()>,
) -> Result<()> {
    let mut f = OutputFile::create(path)?;
    fill(&mut f).map_err(|e| Error::io(path, e))?;
    f.commit()
}

/// A scratch directory beside `output` for a command's intermediate files, named as the
/// module doc says so that a killed run's is removed by the next; removed when dropped.
pub fn scratch_dir(output: &Path, tag: &str) -> Result<ScratchDir> {
    let resolved = resolve(output).map_err(|e| Error::io(output, e))?;
    let (dir, name) = split(&resolved).map_err(|e| Error::io(output, e))?;
    remove_stale(&dir, &name);
    let (path, _) = create_temporary(&dir, &name, tag, true).map_err(|e| Error::io(output, e))?;
    Ok(ScratchDir { path })
}

/// A directory removed with everything in it when dropped (see [`scratch_dir`]).
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory: it is no longer removed on drop.
    fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Write a directory whole: `fill` writes its files into a fresh temporary directory
/// beside `path`, which then takes `path`'s place. A failing `fill` leaves `path` as it
/// was. An existing `path` is replaced only when it is empty or holds `marker` (a file a
/// previous run of the same kind wrote), so nothing else is ever deleted.
pub fn write_dir(path: &Path, marker: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let replaces = if path.exists() {
        let empty = fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .next()
            .is_none();
        if !empty && !path.join(marker).is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("exists and holds no {marker}; refusing to replace it"),
                ),
            ));
        }
        true
    } else {
        false
    };
    let fresh = scratch_dir(path, "dir")?;
    fill(fresh.path())?;
    let fresh = fresh.keep();
    if replaces {
        let old = scratch_dir(path, "old")?.keep();
        fs::rename(path, &old).map_err(|e| Error::io(path, e))?;
        fs::rename(&fresh, path).map_err(|e| Error::io(path, e))?;
        fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        fs::rename(&fresh, path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, text: &str) -> Result<()> {
        write_output(path, |f| f.write_all(text.as_bytes()))
    }

    #[test]
    fn an_output_may_not_be_an_input_or_another_output_even_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.jsonl");
        fs::write(&data, "x").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        let hard = dir.path().join("hard.jsonl");
        fs::hard_link(&data, &hard).unwrap();
        let out = dir.path().join("out.jsonl");
        for same in [&data, &link, &hard] {
            let err = check_paths(&[
                PathRole::input("--data", &data),
                PathRole::output("--out", same),
            ])
            .unwrap_err()
            .to_string();
            assert!(err.contains("--data") && err.contains("--out"), "{err}");
        }
        let dotted = dir.path().join(".").join("out.jsonl");
        let err = check_paths(&[
            PathRole::output("--out", &out),
            PathRole::output("--report", &dotted),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("give each output its own path"), "{err}");
        check_paths(&[
            PathRole::input("--data", &data),
            PathRole::output("--out", &out),
        ])
        .unwrap();
        // Two inputs may be one file.
        check_paths(&[
            PathRole::input("--data", &data),
            PathRole::input("--validation", &link),
        ])
        .unwrap();
        assert_eq!(fs::read_to_string(&data).unwrap(), "x");
    }

    #[test]
    fn an_input_inside_a_replaced_directory_and_a_missing_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        fs::create_dir(&model).unwrap();
        let data = model.join("data.jsonl");
        fs::write(&data, "x").unwrap();
        let err = check_paths(&[
            PathRole::input("--data", &data),
            PathRole::output_dir("--out", &model),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("inside"), "{err}");
        let nowhere = dir.path().join("no/such/dir/out.jsonl");
        let err = check_paths(&[PathRole::output("--summary", &nowhere)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_symlink_is_written_through_and_an_existing_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink("target.txt", &link).unwrap();
        write(&link, "new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // A dangling link makes its target.
        let dangling = dir.path().join("dangling.txt");
        std::os::unix::fs::symlink("made.txt", &dangling).unwrap();
        write(&dangling, "made").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("made.txt")).unwrap(),
            "made"
        );
    }

    #[test]
    fn a_device_is_written_in_place_and_a_failed_fill_leaves_no_file() {
        write(Path::new("/dev/null"), "gone").unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().is_file());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        let err = write_output(&out, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("bad record"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_dead_process_temporaries_are_removed_and_a_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has a pid above the kernel's pid_max (at most 2^22).
        let dead = dir.path().join(".out.txt.glmix-4999999-out-0.tmp");
        let dead_dir = dir.path().join(".out.txt.glmix-4999999-group-3.tmp");
        let live = dir
            .path()
            .join(format!(".out.txt.glmix-{}-out-99.tmp", std::process::id()));
        let other = dir.path().join(".other.txt.glmix-4999999-out-0.tmp");
        for f in [&dead, &live, &other] {
            fs::write(f, "x").unwrap();
        }
        fs::create_dir(&dead_dir).unwrap();
        fs::write(dead_dir.join("part-0.jsonl"), "x").unwrap();
        write(&dir.path().join("out.txt"), "y").unwrap();
        assert!(!dead.exists() && !dead_dir.exists());
        assert!(live.exists() && other.exists());
    }
}
