// Second pass of `column_sums.wgsl` and `entity_loss.wgsl`: output `o` (a coefficient or an
// entity) is the Kahan-compensated sum of its chunks' partial sums
// `partial[part_ptr[o]..part_ptr[o+1]]`, written only when its entity is running.

@group(0) @binding(0) var<storage, read> part_ptr: array<u32>;
@group(0) @binding(1) var<storage, read> owner: array<u32>;
@group(0) @binding(2) var<storage, read> running: array<u32>;
@group(0) @binding(3) var<storage, read> partial: array<f32>;
@group(0) @binding(4) var<storage, read_write> result: array<f32>;
@group(0) @binding(5) var<uniform> outputs: Outputs;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let o = gid.x + gid.y * groups.x * 256u;
    if (o >= outputs.count) {
        return;
    }
    if (running[owner[o]] == 0u) {
        return;
    }
    var sum = 0.0;
    var carry = 0.0;
    for (var p = part_ptr[o]; p < part_ptr[o + 1u]; p = p + 1u) {
        let y = partial[p] - carry;
        let t = sum + y;
        carry = (t - sum) - y;
        sum = t;
    }
    result[o] = sum;
}
