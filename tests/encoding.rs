//! The real `glmix` binary on records that are not plain UTF-8: a byte-order mark before
//! the first line is dropped, and a line that is not UTF-8 fails naming its file and line,
//! or is skipped and counted by `glmix stream --on-bad-record skip`.

mod common;

use common::{glmix, glmix_output, Dir};

const RECORD: &str = r#"{"entity":"a","label":1,"features":[{"name":"x","term":"","value":1}]}"#;

fn bytes_file(dir: &Dir, name: &str, lines: &[&[u8]]) -> String {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    std::fs::write(dir.path(name), bytes).unwrap();
    dir.arg(name)
}

#[test]
fn a_byte_order_mark_is_dropped_and_bad_utf8_names_its_line() {
    let dir = Dir::new();
    let bom = [b"\xef\xbb\xbf".as_slice(), RECORD.as_bytes()].concat();
    let with_bom = bytes_file(&dir, "bom.jsonl", &[&bom, RECORD.as_bytes()]);
    let out = dir.arg("m.jsonl");
    let train = |data: &str| {
        let argv = [
            "train",
            "--data",
            data,
            "--objective",
            "logistic",
            "--device",
            "cpu",
        ];
        let mut argv: Vec<&str> = argv.to_vec();
        argv.extend(["--out", &out]);
        glmix_output(&argv)
    };
    let o = train(&with_bom);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The entity id's letter replaced by a byte that is never UTF-8.
    let mut bad = RECORD.as_bytes().to_vec();
    bad[11] = 0xff;
    let broken = bytes_file(&dir, "bad.jsonl", &[RECORD.as_bytes(), &bad]);
    let o = train(&broken);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("bad.jsonl:2: line: not UTF-8 (byte 12 of the line)"),
        "{stderr}"
    );
    for command in [
        vec!["group", "--data", &broken, "--out", &dir.arg("g.jsonl")],
        vec![
            "score",
            "--data",
            &broken,
            "--model",
            &out,
            "--out",
            &dir.arg("s.jsonl"),
        ],
    ] {
        let o = glmix_output(&command);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("bad.jsonl:2: line: not UTF-8"),
            "{command:?}: {stderr}"
        );
    }
    let store = dir.arg("s.redb");
    let o = glmix(&[
        "stream",
        "--data",
        &broken,
        "--store",
        &store,
        "--objective",
        "bayes-logistic",
        "--device",
        "cpu",
        "--on-bad-record",
        "skip",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("\"skipped\":1") || stderr.contains("skipped 1"),
        "{stderr}"
    );
}
