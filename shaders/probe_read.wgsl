// The card's achievable read bandwidth, for `glmix gpu-probe`: every invocation sums a
// strided share of `data` (consecutive invocations read consecutive vec4s) and writes one
// partial, so the pass reads each byte once and writes next to nothing. It mirrors no CPU
// function; its GB/s is the denominator of the entity kernels' share of bandwidth.

@group(0) @binding(0) var<storage, read> data: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sums: array<f32>;
@group(0) @binding(2) var<uniform> counts: Outputs; // count: vec4s of `data`

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let threads = groups.x * 256u;
    var acc = vec4<f32>(0.0);
    for (var i = gid.x; i < counts.count; i = i + threads) {
        acc = acc + data[i];
    }
    sums[gid.x] = acc.x + acc.y + acc.z + acc.w;
}
