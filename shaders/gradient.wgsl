// Data part of the gradient, Xᵀ ℓ', one invocation per coefficient of a running entity.
// WGSL has no float atomics, so each coefficient sums its own column of the batch's CSC
// copy (rows and values of that coefficient). Mirrors the gradient loop of
// `EntityProblem::value_and_gradient`.

// Sizes of the batch (arrays are padded to at least one element, so their lengths are not used).
struct Counts {
    rows: u32,
    coefficients: u32,
    entities: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> csc_ptr: array<u32>;
@group(0) @binding(1) var<storage, read> csc_rows: array<u32>;
@group(0) @binding(2) var<storage, read> csc_vals: array<f32>;
@group(0) @binding(3) var<storage, read> coef_entity: array<u32>;
@group(0) @binding(4) var<storage, read> running: array<u32>;
@group(0) @binding(5) var<storage, read> row_d1: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;
@group(0) @binding(7) var<uniform> counts: Counts;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let j = gid.x + gid.y * groups.x * 256u;
    if (j >= counts.coefficients) {
        return;
    }
    if (running[coef_entity[j]] == 0u) {
        return;
    }
    var g = 0.0;
    for (var k = csc_ptr[j]; k < csc_ptr[j + 1u]; k = k + 1u) {
        g = g + row_d1[csc_rows[k]] * csc_vals[k];
    }
    grad[j] = g;
}
