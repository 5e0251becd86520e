//! The real `glmix` binary on records that are not plain: a byte-order mark before the
//! first line is dropped; a line that is not UTF-8 fails naming its file and line, or is
//! skipped and counted by `glmix stream --on-bad-record skip`; keys that no field reads get
//! one notice naming them, or with `--strict` an error.

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

#[test]
fn keys_no_field_reads_get_one_notice_or_with_strict_an_error() {
    let dir = Dir::new();
    let data = dir.write(
        "typo.jsonl",
        concat!(
            r#"{"entity":"a","label":1,"features":[]}"#,
            "\n",
            r#"{"entity":"a","label":0,"ofset":0.5,"features":[]}"#,
            "\n",
            r#"{"entity":"b","label":1,"ofset":0.5,"features":[]}"#,
            "\n",
        ),
    );
    let out = dir.arg("m.jsonl");
    let train = |extra: &[&str]| {
        let mut argv = vec!["train", "--data", &data, "--objective", "logistic"];
        argv.extend(["--device", "cpu", "--out", &out]);
        argv.extend(extra);
        glmix_output(&argv)
    };
    for extra in [&[][..], &["--chunk-entities", "1"]] {
        let o = train(extra);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        let notices = stderr.matches("keys no field reads").count();
        assert_eq!(notices, 1, "{extra:?}: {stderr}");
        assert!(stderr.contains(r#""ofset" ("#), "{stderr}");
    }
    let o = train(&["--strict"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("typo.jsonl:2: ofset: no field reads this key (--strict)"),
        "{stderr}"
    );
}

/// 30 stream records of 3 entities; `typo(i)` gives record i an `ofset` key.
fn stream_records(dir: &Dir, typo: impl Fn(usize) -> bool) -> String {
    let mut lines = String::new();
    for i in 0..30 {
        let key = if typo(i) { r#""ofset":0.5,"# } else { "" };
        lines += &format!(
            r#"{{"entity":"e{}","label":{},{key}"timestamp":{i},"features":[]}}"#,
            i % 3,
            i % 2
        );
        lines += "\n";
    }
    dir.write("s.jsonl", &lines)
}

/// `glmix stream` of `data` into `store` in mini-batches of 10, with `extra`.
fn stream(data: &str, store: &str, extra: &[&str]) -> std::process::Output {
    let mut argv = vec![
        "stream",
        "--data",
        data,
        "--store",
        store,
        "--objective",
        "bayes-logistic",
        "--device",
        "cpu",
        "--batch-records",
        "10",
    ];
    argv.extend(extra);
    glmix_output(&argv)
}

#[test]
fn a_stream_names_keys_no_field_reads_once() {
    let dir = Dir::new();
    let data = stream_records(&dir, |_| true);
    let o = stream(&data, &dir.arg("s.redb"), &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(stderr.matches("keys no field reads").count(), 1, "{stderr}");
    assert!(
        stderr.contains(r#""ofset" (10 records, the first on line 1)"#),
        "{stderr}"
    );
    // `timestamp`, which glmix itself writes, is not named.
    assert!(!stderr.contains("\"timestamp\""), "{stderr}");
}

#[test]
fn a_strict_stream_stops_before_the_mini_batch_with_an_unread_key() {
    let dir = Dir::new();
    // The typo first appears on line 15, in the second mini-batch of 10.
    let data = stream_records(&dir, |i| i == 14);
    let store = dir.arg("s.redb");
    let o = stream(&data, &store, &["--strict"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("s.jsonl:15: ofset: no field reads this key (--strict)"),
        "{stderr}"
    );
    // The first mini-batch is committed; the one holding the typo is not.
    let info = glmix(&["store", "info", "--store", &store]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["batches"], 1, "{info}");
    assert_eq!(info["position"]["lines"], 10, "{info}");
}
