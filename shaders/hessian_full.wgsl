// The dense (d+1)×(d+1) data Hessian Xᵀ diag(ℓ'') X of one entity per task (the task
// covers all its rows), from the ℓ'' per row that `entity_hessian_diagonal` wrote into
// `curvature`. Mirrors `EntityProblem::data_hessian_full` of src/objective (f64 there, f32
// here). Lane t computes the entries (a, b), a ≤ b, of flat indices t, t + WG, … and writes
// both (a, b) and (b, a), so that the block is exactly symmetric; its rows are summed with
// Kahan compensation.

// Column j of row `base` (the first vec4 of the row in `x`): 1 for the intercept.
fn column(base: u32, j: u32) -> f32 {
    if (j == 0u) {
        return 1.0;
    }
    let v = x[base + (j - 1u) / 4u];
    return v[(j - 1u) % 4u];
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let k = task_index(wid, groups);
    if (k >= counts.count) {
        return;
    }
    let task = tasks[k];
    let e = entities[task.entity];
    let dim = e.d + 1u;
    for (var idx = t; idx < dim * dim; idx = idx + WG) {
        let a = idx / dim;
        let b = idx % dim;
        if (a > b) {
            continue;
        }
        var sum = 0.0;
        var compensation = 0.0;
        for (var r = task.row_begin; r < task.row_end; r = r + 1u) {
            let base = e.x_at + r * e.d4;
            let y = curvature[e.row_at + r] * column(base, a) * column(base, b) - compensation;
            let s = sum + y;
            compensation = (s - sum) - y;
            sum = s;
        }
        out[task.out_at + a * dim + b] = sum;
        out[task.out_at + b * dim + a] = sum;
    }
}
