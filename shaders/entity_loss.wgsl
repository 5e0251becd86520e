// Data part of each running entity's loss, Σ_i ℓ_i over its rows, in two passes. This
// pass: one invocation per chunk of at most 256 rows of one entity, Kahan-compensated;
// `reduce.wgsl` then adds the chunks of each entity. Mirrors the loss sum of
// `EntityProblem::value_and_gradient`.

@group(0) @binding(0) var<storage, read> chunks: array<Chunk>;
@group(0) @binding(1) var<storage, read> running: array<u32>;
@group(0) @binding(2) var<storage, read> row_loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<uniform> counts: Counts;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let c = gid.x + gid.y * groups.x * 256u;
    if (c >= counts.loss_chunks) {
        return;
    }
    let chunk = chunks[c];
    if (running[chunk.entity] == 0u) {
        return;
    }
    var sum = 0.0;
    var carry = 0.0;
    for (var i = chunk.start; i < chunk.end; i = i + 1u) {
        let y = row_loss[i] - carry;
        let t = sum + y;
        carry = (t - sum) - y;
        sum = t;
    }
    partial[c] = sum;
}
