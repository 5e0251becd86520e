// x_i·θ of every record being scored: the linear part of its margin o_i + x_i·θ, the offset
// being added by the host in f64. Mirrors `MarginPlan::row_dot` of src/score.rs (f64 there,
// f32 here). One invocation per record; the grid may be two-dimensional for many records.

@group(0) @binding(0) var<storage, read> nz_ptr: array<u32>;
@group(0) @binding(1) var<storage, read> cols: array<u32>;
@group(0) @binding(2) var<storage, read> vals: array<f32>;
@group(0) @binding(3) var<storage, read> theta: array<f32>;
@group(0) @binding(4) var<storage, read_write> dots: array<f32>;
@group(0) @binding(5) var<uniform> outputs: Outputs;

fn row_dot(i: u32) -> f32 {
    var sum = 0.0;
    for (var k = nz_ptr[i]; k < nz_ptr[i + 1u]; k = k + 1u) {
        sum = sum + vals[k] * theta[cols[k]];
    }
    return sum;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i >= outputs.count) {
        return;
    }
    dots[i] = row_dot(i);
}
