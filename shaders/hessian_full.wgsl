// The full data Hessian Xᵀ diag(ℓ'') X of every entity, one invocation per entry (j, k) of
// each entity's d×d block: the sum of ℓ''_i x_ij x_ik over the rows both coefficients
// have, found by merging their CSC columns (row indices ascend within a column).
// Mirrors `EntityProblem::data_hessian_full`.

@group(0) @binding(0) var<storage, read> block_ptr: array<u32>;
@group(0) @binding(1) var<storage, read> coef_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> csc_ptr: array<u32>;
@group(0) @binding(3) var<storage, read> csc_rows: array<u32>;
@group(0) @binding(4) var<storage, read> csc_vals: array<f32>;
@group(0) @binding(5) var<storage, read> row_d2: array<f32>;
@group(0) @binding(6) var<storage, read_write> blocks: array<f32>;
@group(0) @binding(7) var<uniform> outputs: Outputs;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let t = gid.x + gid.y * groups.x * 256u;
    if (t >= outputs.count) {
        return;
    }
    // The entity whose block holds entry t: the last e with block_ptr[e] ≤ t.
    var lo = 0u;
    var hi = arrayLength(&block_ptr) - 1u;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (block_ptr[mid] <= t) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let e = lo;
    let d = coef_ptr[e + 1u] - coef_ptr[e];
    let local = t - block_ptr[e];
    // Entries (j, k) and (k, j) merge the same two columns in the same roles, so that
    // their f32 roundings agree and the block is exactly symmetric.
    let j = coef_ptr[e] + min(local / d, local % d);
    let k = coef_ptr[e] + max(local / d, local % d);
    var a = csc_ptr[j];
    var b = csc_ptr[k];
    let a_end = csc_ptr[j + 1u];
    let b_end = csc_ptr[k + 1u];
    var h = 0.0;
    while (a < a_end && b < b_end) {
        let ra = csc_rows[a];
        let rb = csc_rows[b];
        if (ra == rb) {
            h = h + row_d2[ra] * csc_vals[a] * csc_vals[b];
            a = a + 1u;
            b = b + 1u;
        } else if (ra < rb) {
            a = a + 1u;
        } else {
            b = b + 1u;
        }
    }
    blocks[t] = h;
}
