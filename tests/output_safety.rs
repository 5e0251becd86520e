//! The real `glmix` binary never loses data through its outputs: an output naming an input,
//! the store or another output is refused before any work, and leaves every file as it was;
//! special files, `-` and symbolic links are written through; modes follow the umask.

mod common;

use common::{glmix, glmix_output, Dir};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A small logistic workload written by `glmix generate`.
fn records(dir: &Dir, name: &str) -> String {
    let out = dir.arg(name);
    glmix(&[
        "generate",
        "--entities",
        "20",
        "--rows",
        "10",
        "--features",
        "3",
        "--out",
        &out,
    ]);
    out
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Dir) -> Vec<(String, Vec<u8>)> {
    dir.files()
        .into_iter()
        .map(|f| {
            let bytes = fs::read(dir.path(&f)).unwrap_or_default();
            (f, bytes)
        })
        .collect()
}

/// `argv` fails naming both options, and no file of `dir` changed or appeared.
fn refused(dir: &Dir, argv: &[&str], options: [&str; 2]) {
    let before = snapshot(dir);
    let o = glmix_output(argv);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{argv:?} succeeded");
    for option in options {
        assert!(
            stderr.contains(option),
            "{argv:?}: no {option} in:\n{stderr}"
        );
    }
    assert_eq!(snapshot(dir), before, "{argv:?} changed files");
}

#[test]
fn an_output_naming_an_input_the_store_or_another_output_is_refused_before_any_work() {
    let dir = Dir::new();
    let data = records(&dir, "data.jsonl");
    let models = dir.arg("models.jsonl");
    glmix(&[
        "train",
        "--data",
        &data,
        "--objective",
        "logistic",
        "--device",
        "cpu",
        "--out",
        &models,
    ]);
    let store = dir.arg("store.redb");
    glmix(&[
        "store",
        "import",
        "--store",
        &store,
        "--models",
        &models,
        "--missing-precision",
        "1",
    ]);
    let link = dir.arg("link.jsonl");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let train = |out: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--data", &data, "--objective", "logistic"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(
            ["--device", "cpu", "--out", out]
                .iter()
                .map(|s| s.to_string()),
        );
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let out = dir.arg("out.jsonl");
    refused(&dir, &as_strs(&train(&data, &[])), ["--data", "--out"]);
    refused(&dir, &as_strs(&train(&link, &[])), ["--data", "--out"]);
    refused(
        &dir,
        &as_strs(&train(&out, &["--report", &out])),
        ["--out", "--report"],
    );
    refused(
        &dir,
        &as_strs(&train(&out, &["--summary", &data])),
        ["--data", "--summary"],
    );
    refused(
        &dir,
        &as_strs(&train(&out, &["--prior", &out])),
        ["--prior", "--out"],
    );
    refused(
        &dir,
        &[
            "score", "--data", &data, "--model", &models, "--out", &models,
        ],
        ["--model", "--out"],
    );
    refused(
        &dir,
        &["store", "export", "--store", &store, "--out", &store],
        ["--store", "--out"],
    );
    let stream = |metrics: &str| -> Vec<String> {
        let argv = [
            "stream",
            "--data",
            &data,
            "--store",
            &store,
            "--metrics",
            metrics,
        ];
        let mut argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        argv.extend(["--objective".into(), "bayes-logistic".into()]);
        argv
    };
    refused(&dir, &as_strs(&stream(&store)), ["--store", "--metrics"]);
    refused(&dir, &as_strs(&stream(&data)), ["--data", "--metrics"]);
    refused(
        &dir,
        &["group", "--data", &data, "--out", &link],
        ["--data", "--out"],
    );
    // A directory that refuses a new file (even to root) is named before any work.
    refused(
        &dir,
        &as_strs(&train("/proc/glmix-out.jsonl", &[])),
        ["--out", "cannot create a file in /proc"],
    );
    // A bad --summary directory fails before --out is written.
    let nowhere = dir.arg("no/such/summary.json");
    refused(
        &dir,
        &as_strs(&train(&out, &["--summary", &nowhere])),
        ["summary.json", "does not exist"],
    );
}

#[test]
fn special_files_stdout_and_links_are_written_through() {
    let dir = Dir::new();
    let data = records(&dir, "data.jsonl");
    let base = [
        "train",
        "--data",
        &data,
        "--objective",
        "logistic",
        "--device",
        "cpu",
    ];
    // `-` is standard output: the models arrive there and no file named `-` appears.
    let mut argv = base.to_vec();
    argv.extend(["--out", "-"]);
    let o = glmix(&argv);
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 20, "{stdout}");
    assert!(!std::path::Path::new("-").exists());
    // /dev/null stays a device.
    let mut argv = base.to_vec();
    argv.extend(["--out", "/dev/null"]);
    glmix(&argv);
    assert!(!fs::metadata("/dev/null").unwrap().is_file());
    // A symbolic link is written through and stays a link.
    let target = dir.arg("target.jsonl");
    fs::write(&target, "old").unwrap();
    let link = dir.arg("models.jsonl");
    std::os::unix::fs::symlink("target.jsonl", &link).unwrap();
    let mut argv = base.to_vec();
    argv.extend(["--out", &link]);
    glmix(&argv);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&target).unwrap().lines().count(), 20);
}

#[test]
fn modes_follow_the_umask_and_an_existing_file_keeps_its_own() {
    let dir = Dir::new();
    let fresh = dir.arg("fresh.jsonl");
    let kept = dir.write("kept.jsonl", "old");
    fs::set_permissions(&kept, fs::Permissions::from_mode(0o604)).unwrap();
    for out in [&fresh, &kept] {
        let status = Command::new("sh")
            .args([
                "-c",
                "umask 027; exec \"$0\" generate --entities 3 --out \"$1\"",
            ])
            .args([env!("CARGO_BIN_EXE_glmix"), out.as_str()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mode = |p: &str| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&fresh), 0o640);
    assert_eq!(mode(&kept), 0o604);
}

#[test]
fn a_killed_runs_temporary_files_are_removed_by_the_next_run() {
    let dir = Dir::new();
    // What `kill -9` of a train or group leaves: a temporary file and a scratch directory
    // of a process that is gone (no pid is above the kernel's limit of 2^22).
    let stale_file = dir.write(".out.jsonl.glmix-4999999-out-0.tmp", "half");
    let stale_dir = dir.path(".out.jsonl.glmix-4999999-group-1.tmp");
    fs::create_dir(&stale_dir).unwrap();
    fs::write(stale_dir.join("part-0.jsonl"), "half").unwrap();
    let data = records(&dir, "data.jsonl");
    glmix(&["group", "--data", &data, "--out", &dir.arg("out.jsonl")]);
    assert_eq!(dir.files(), ["data.jsonl", "out.jsonl"]);
    assert!(!std::path::Path::new(&stale_file).exists());
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
