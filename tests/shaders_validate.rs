//! Every WGSL kernel in `shaders/`, with `common.wgsl` prepended as the evaluator builds
//! it, parses and validates with naga, on the CPU, so a broken shader fails here before any
//! device is involved.

use std::fs;
use std::path::Path;

#[test]
fn every_shader_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let common = fs::read_to_string(dir.join("common.wgsl")).unwrap();
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl")
            || path.file_name().and_then(|n| n.to_str()) == Some("common.wgsl")
        {
            continue;
        }
        let source = common.clone() + &fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}:\n{}", path.display(), e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert!(
            module.entry_points.iter().any(|ep| ep.name == "main"),
            "{}: no entry point `main`",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(
        checked, 6,
        "expected the five kernels of the GPU evaluator and the scoring one"
    );
}
