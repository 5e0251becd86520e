// Column sums Σ_i w_i x_ij^POWER over the batch's CSC copy, first pass: one invocation per
// chunk of at most 256 entries of one coefficient's column (WGSL has no float atomics, so
// each chunk writes its own partial sum); `reduce.wgsl` then adds the chunks of each
// coefficient. A coefficient with a million rows is thus spread over many invocations.
//
// POWER = 1 with w = ℓ' gives the data gradient Xᵀ ℓ' (the gradient loop of
// `EntityProblem::value_and_gradient`); POWER = 2 with w = ℓ'' gives the data Hessian
// diagonal (`EntityProblem::data_hessian_diagonal`).

override POWER: u32 = 1u;

@group(0) @binding(0) var<storage, read> chunks: array<Chunk>;
@group(0) @binding(1) var<storage, read> csc_rows: array<u32>;
@group(0) @binding(2) var<storage, read> csc_vals: array<f32>;
@group(0) @binding(3) var<storage, read> running: array<u32>;
@group(0) @binding(4) var<storage, read> row_weight: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<uniform> counts: Counts;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let c = gid.x + gid.y * groups.x * 256u;
    if (c >= counts.gradient_chunks) {
        return;
    }
    let chunk = chunks[c];
    if (running[chunk.entity] == 0u) {
        return;
    }
    var sum = 0.0;
    for (var k = chunk.start; k < chunk.end; k = k + 1u) {
        let x = csc_vals[k];
        var term = row_weight[csc_rows[k]] * x;
        if (POWER == 2u) {
            term = term * x;
        }
        sum = sum + term;
    }
    partial[c] = sum;
}
