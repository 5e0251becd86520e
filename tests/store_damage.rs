//! A damaged model store is refused with an error naming the store and what is damaged,
//! never served: a flipped bit in a stored coefficient fails its model's checksum, and
//! `glmix store check` names the model.

mod common;

use common::{glmix, glmix_output, Dir};
use std::fs;

#[test]
fn a_flipped_bit_in_a_stored_coefficient_is_refused_not_served() {
    let dir = Dir::new();
    // A mean whose bytes are easy to find in the store file.
    let mean: f64 = 0.123_456_789_012_345_6;
    let models = dir.write(
        "m.jsonl",
        &format!(
            r#"{{"entity":"a","means":[{{"name":"intercept","term":"intercept","value":{mean}}}],"variances":[{{"name":"intercept","term":"intercept","value":0.5}}]}}"#
        ),
    );
    let store = dir.arg("s.redb");
    glmix(&["store", "import", "--store", &store, "--models", &models]);
    let out = dir.arg("out.jsonl");
    glmix(&["store", "export", "--store", &store, "--out", &out]);
    assert!(fs::read_to_string(&out)
        .unwrap()
        .contains("0.1234567890123456"));

    let check = glmix(&["store", "check", "--store", &store]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["sound_models"], 1);
    assert_eq!(report["damaged_models"], serde_json::json!([]));

    let mut bytes = fs::read(dir.path("s.redb")).unwrap();
    let needle = mean.to_le_bytes();
    let at = bytes
        .windows(8)
        .position(|w| w == needle)
        .expect("the mean is stored as written");
    bytes[at] ^= 0x01;
    fs::write(dir.path("s.redb"), &bytes).unwrap();
    fs::remove_file(&out).unwrap();
    let o = glmix_output(&["store", "export", "--store", &store, "--out", &out]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a damaged model was exported");
    assert!(
        stderr.contains("s.redb") && stderr.contains("damaged"),
        "{stderr}"
    );
    assert!(!dir.path("out.jsonl").exists());
    // `store check` names the damaged model and fails.
    let o = glmix_output(&["store", "check", "--store", &store]);
    assert!(!o.status.success());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["sound_models"], 0);
    assert_eq!(report["damaged_models"][0]["entity"], "a");
    let why = report["damaged_models"][0]["why"].as_str().unwrap();
    assert!(why.contains("checksum"), "{why}");
}
