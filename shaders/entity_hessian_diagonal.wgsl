// The diagonal of the data Hessian Xᵀ diag(ℓ'') X of one task: Σℓ''_i (the intercept's
// entry) and Σℓ''_i x_ij². Mirrors `EntityProblem::data_hessian_diagonal` of src/objective
// (f64 there, f32 here); the layout and the lane mapping are in entity_common.wgsl.

// 1: also write ℓ'' of each row into `curvature`, for `hessian_full`.
override ROW_CURVATURE: u32 = 0u;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    entity_row_sums(task_index(wid, groups), t, HESSIAN_DIAGONAL, ROW_CURVATURE == 1u);
}
