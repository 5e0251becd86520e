//! Every WGSL kernel in `shaders/`, as the evaluator builds its source (`common.wgsl`, and
//! for the entity kernels `entity_common.wgsl`, prepended), parses and validates with naga
//! on the CPU for each row width, so a broken shader fails here before any device is
//! involved.

use glmix::eval::gpu::{kernel_source, KERNELS, WIDE_COLS_PER_LANE};
use std::fs;
use std::path::Path;

#[test]
fn every_shader_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".wgsl") && !f.ends_with("common.wgsl"))
        .map(|f| f.trim_end_matches(".wgsl").to_string())
        .collect();
    files.sort();
    let mut kernels: Vec<String> = KERNELS.iter().map(|k| k.to_string()).collect();
    kernels.sort();
    assert_eq!(files, kernels, "every kernel file is built, and only those");
    for kernel in KERNELS {
        for cols in [1, WIDE_COLS_PER_LANE] {
            let source = kernel_source(kernel, cols);
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{kernel}:\n{}", e.emit_to_string(&source)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{kernel} ({cols} vec4s per lane): {e:?}"));
            assert!(
                module.entry_points.iter().any(|ep| ep.name == "main"),
                "{kernel}: no entry point `main`"
            );
        }
    }
}
