// Data part of each running entity's loss, Σ_i ℓ_i over its rows, one invocation per
// entity, with Kahan compensation so that long entities keep f32 accuracy.
// Mirrors the loss sum of `EntityProblem::value_and_gradient`.

// Sizes of the batch (arrays are padded to at least one element, so their lengths are not used).
struct Counts {
    rows: u32,
    coefficients: u32,
    entities: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(1) var<storage, read> running: array<u32>;
@group(0) @binding(2) var<storage, read> row_loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<uniform> counts: Counts;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let e = gid.x + gid.y * groups.x * 256u;
    if (e >= counts.entities) {
        return;
    }
    if (running[e] == 0u) {
        return;
    }
    var sum = 0.0;
    var carry = 0.0;
    for (var i = row_ptr[e]; i < row_ptr[e + 1u]; i = i + 1u) {
        let y = row_loss[i] - carry;
        let t = sum + y;
        carry = (t - sum) - y;
        sum = t;
    }
    loss[e] = sum;
}
