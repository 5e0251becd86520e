// The data loss and gradient of one task (an entity, or a range of the rows of an entity
// with very many), in one pass over its rows: Σℓ_i, Σℓ'_i (∂/∂θ0) and Σℓ'_i x_ij (∂/∂θj).
// Mirrors `EntityProblem::data_value_and_gradient` of src/objective (f64 there, f32 here);
// the layout and the lane mapping are in entity_common.wgsl.

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    entity_row_sums(task_index(wid, groups), t, VALUE_GRADIENT, false);
}
