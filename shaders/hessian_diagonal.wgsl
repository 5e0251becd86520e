// Diagonal of the data Hessian, diag(Xᵀ diag(ℓ'') X), first pass: one invocation per
// chunk of a coefficient's CSC column sums ℓ''_i x_ij²; `reduce.wgsl` adds the chunks.
// Mirrors `EntityProblem::data_hessian_diagonal`.

// Sizes of the batch (arrays are padded to at least one element, so their lengths are not used).
struct Counts {
    rows: u32,
    coefficients: u32,
    entities: u32,
    gradient_chunks: u32,
    loss_chunks: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Entries `start..end` of `csc_rows`/`csc_vals`, all of one coefficient of `entity`.
struct Chunk {
    start: u32,
    end: u32,
    entity: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> chunks: array<Chunk>;
@group(0) @binding(1) var<storage, read> csc_rows: array<u32>;
@group(0) @binding(2) var<storage, read> csc_vals: array<f32>;
@group(0) @binding(3) var<storage, read> running: array<u32>;
@group(0) @binding(4) var<storage, read> row_d2: array<f32>;
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
    var h = 0.0;
    for (var k = chunk.start; k < chunk.end; k = k + 1u) {
        let x = csc_vals[k];
        h = h + row_d2[csc_rows[k]] * x * x;
    }
    partial[c] = h;
}
