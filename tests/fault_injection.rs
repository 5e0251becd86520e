//! Seeded mutation fuzzing of the real `glmix` binary's inputs: record lines, model files
//! and model stores, each damaged at random (bytes flipped, inserted, deleted, cut short).
//! Whatever the damage, glmix must not panic (exit 101), and a failed run must leave no
//! output and no temporary file behind. A bounded number of cases, so that it runs in CI.

mod common;

use common::{glmix, glmix_output, Dir};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs;

/// Damage `bytes` in one of a few ways, a few times.
fn mutate(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if out.is_empty() {
            out.push(rng.gen());
            continue;
        }
        let at = rng.gen_range(0..out.len());
        match rng.gen_range(0..6) {
            0 => out[at] ^= 1 << rng.gen_range(0..8),
            1 => out[at] = rng.gen(),
            2 => {
                let alphabet = b"{}[],:\"-0e9.\\nul \n";
                out.insert(at, alphabet[rng.gen_range(0..alphabet.len())]);
            }
            3 => {
                out.remove(at);
            }
            4 => out.truncate(at),
            _ => {
                let len = rng.gen_range(1..=64.min(out.len() - at));
                let chunk: Vec<u8> = out[at..at + len].to_vec();
                let to = rng.gen_range(0..out.len());
                out.splice(to..to, chunk);
            }
        }
    }
    out
}

/// Run `argv` on damaged `input` (written to `name` in `dir`); it must not panic, and
/// when it fails, `out` must not exist and no temporary file may be left.
fn check(dir: &Dir, name: &str, input: &[u8], argv: &[&str], out: &str) -> bool {
    fs::write(dir.path(name), input).unwrap();
    let _ = fs::remove_file(out);
    let o = glmix_output(argv);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(101), "{argv:?} panicked:\n{stderr}");
    assert!(o.status.code().is_some(), "{argv:?} was killed:\n{stderr}");
    let left: Vec<String> = dir
        .files()
        .into_iter()
        .filter(|f| f.contains(".glmix-"))
        .collect();
    assert!(left.is_empty(), "{argv:?} left {left:?}");
    if !o.status.success() {
        assert!(
            !std::path::Path::new(out).exists(),
            "{argv:?} failed but wrote {out}"
        );
    }
    o.status.success()
}

#[test]
fn damaged_records_models_and_stores_never_panic_nor_leave_output() {
    let dir = Dir::new();
    let records = dir.arg("good.jsonl");
    glmix(&[
        "generate",
        "--entities",
        "6",
        "--rows",
        "4",
        "--features",
        "3",
        "--density",
        "0.6",
        "--out",
        &records,
    ]);
    let good_records = fs::read(&records).unwrap();
    let models = dir.arg("good-models.jsonl");
    glmix(&[
        "train",
        "--data",
        &records,
        "--objective",
        "bayes-logistic",
        "--hessian",
        "full",
        "--device",
        "cpu",
        "--out",
        &models,
    ]);
    let good_models = fs::read(&models).unwrap();
    let store = dir.arg("good.redb");
    glmix(&["store", "import", "--store", &store, "--models", &models]);
    let good_store = fs::read(&store).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let (bad, out) = (dir.arg("bad"), dir.arg("out.jsonl"));
    let good = dir.arg("good.jsonl");
    let score_with_bad_models = ["score", "--data", &good, "--model", &bad, "--out", &out];
    let mut outcomes = [0usize; 2];
    for case in 0..120 {
        let records = mutate(&mut rng, &good_records);
        let ok = check(
            &dir,
            "bad",
            &records,
            &[
                "train",
                "--data",
                &bad,
                "--objective",
                "logistic",
                "--device",
                "cpu",
                "--out",
                &out,
            ],
            &out,
        );
        outcomes[usize::from(ok)] += 1;
        let models = mutate(&mut rng, &good_models);
        let argv = score_with_bad_models;
        outcomes[usize::from(check(&dir, "bad", &models, &argv, &out))] += 1;
        if case % 2 == 0 {
            let argv = [
                "train",
                "--data",
                &good,
                "--objective",
                "bayes-logistic",
                "--prior",
                &bad,
                "--device",
                "cpu",
                "--out",
                &out,
            ];
            outcomes[usize::from(check(&dir, "bad", &models, &argv, &out))] += 1;
        }
    }
    // Stores: damage a copy, then read it as every read-only command does.
    for _ in 0..40 {
        let mut bytes = good_store.clone();
        let at = rng.gen_range(0..bytes.len());
        let len = rng.gen_range(1..=2048.min(bytes.len() - at));
        rng.fill(&mut bytes[at..at + len]);
        let argv = ["store", "export", "--store", &bad, "--out", &out];
        outcomes[usize::from(check(&dir, "bad", &bytes, &argv, &out))] += 1;
        let argv = ["store", "check", "--store", &bad];
        outcomes[usize::from(check(&dir, "bad", &bytes, &argv, &out))] += 1;
        let argv = score_with_bad_models;
        outcomes[usize::from(check(&dir, "bad", &bytes, &argv, &out))] += 1;
    }
    eprintln!("{} failed cleanly, {} succeeded", outcomes[0], outcomes[1]);
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
