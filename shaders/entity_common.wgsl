// The dense entity-major layout of src/eval/gpu/layout.rs, and the per-task row sums that
// `entity_value_gradient` and `entity_hessian_diagonal` share. Prepended after common.wgsl
// and after the host's `const COLS_PER_LANE: u32 = …;` (1 for rows of at most WG vec4s,
// more for wider rows).
//
// One workgroup of WG lanes runs one task: a range of the rows of one entity. `lanes` (L),
// the power of two ≥ d4 capped at WG, share a row: lane `col` reads vec4s col, col + L, …
// of it, so consecutive lanes read consecutive 16-byte words and a step of WG / L rows
// reads one contiguous block (coalesced), each byte of x once per dispatch. The row's dot
// product is a tree sum over its L lanes in workgroup memory; the row's terms follow at
// once, each lane adds its columns' share in registers, and tree sums over the rows of a
// step and over the workgroup finish the task.

const WG: u32 = 64u;
// 0: squared loss, 1: logistic loss (set when the pipeline is built).
override LOSS: u32 = 1u;

struct Entity {
    x_at: u32,   // first vec4 of the entity's rows in `x`
    row_at: u32, // first row of the entity in `rows`
    rows: u32,
    d4: u32,     // vec4s per row: ⌈d/4⌉
    d: u32,      // features; the intercept is implicit (margin = o + θ0 + x·θ)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct Task {
    entity: u32,
    row_begin: u32, // rows of the entity summed by this task
    row_end: u32,
    theta_at: u32,  // θ0, θ1..d of the entity in `theta`
    out_at: u32,    // the task's outputs in `out`
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> entities: array<Entity>;
@group(0) @binding(1) var<storage, read> tasks: array<Task>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
// label (±1 for the logistic loss), weight, offset, 0
@group(0) @binding(3) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> theta: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// ℓ'' per row, for `hessian_full`
@group(0) @binding(6) var<storage, read_write> curvature: array<f32>;
@group(0) @binding(7) var<uniform> counts: Outputs;

var<workgroup> red: array<f32, WG>;
var<workgroup> red2: array<vec2<f32>, WG>;
var<workgroup> red4: array<vec4<f32>, WG>;
var<workgroup> shape: vec4<u32>;

// What `entity_row_sums` adds up.
const VALUE_GRADIENT: u32 = 0u; // out: Σℓ, Σℓ', Σℓ'·x_j
const HESSIAN_DIAGONAL: u32 = 1u; // out: Σℓ'', Σℓ''·x_j²

// This workgroup's task in a grid that may be two-dimensional.
fn task_index(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

// Σ v over the `lanes` lanes of each row; every lane gets its row's sum.
fn row_sum(v: f32, t: u32, col: u32, lanes: u32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var o = lanes / 2u; o > 0u; o = o / 2u) {
        if (col < o) {
            red[t] = red[t] + red[t + o];
        }
        workgroupBarrier();
    }
    let s = red[t - col];
    workgroupBarrier();
    return s;
}

fn entity_row_sums(k: u32, t: u32, what: u32, write_curvature: bool) {
    if (t == 0u) {
        var s = vec4<u32>(0u, 0u, 0u, 1u);
        if (k < counts.count) {
            let task = tasks[k];
            let d4 = entities[task.entity].d4;
            var l = 1u;
            while (l < d4 && l < WG) {
                l = l * 2u;
            }
            s = vec4<u32>(task.row_begin, task.row_end, d4, l);
        }
        shape = s;
    }
    let sh = workgroupUniformLoad(&shape);
    if (k >= counts.count) {
        return;
    }
    let task = tasks[k];
    let e = entities[task.entity];
    let d4 = sh.z;
    let lanes = sh.w;
    let step = WG / lanes;
    let col = t % lanes;
    let roff = t / lanes;
    let th0 = theta[task.theta_at];
    var th: array<vec4<f32>, COLS_PER_LANE>;
    for (var c = 0u; c < COLS_PER_LANE; c = c + 1u) {
        let v = col + c * lanes;
        for (var q = 0u; q < 4u; q = q + 1u) {
            let j = v * 4u + q;
            if (v < d4 && j < e.d) {
                th[c][q] = theta[task.theta_at + 1u + j];
            }
        }
    }
    var acc: array<vec4<f32>, COLS_PER_LANE>;
    var head = vec2<f32>(0.0);
    for (var r0 = sh.x; r0 < sh.y; r0 = r0 + step) {
        let r = r0 + roff;
        let live = r < sh.y;
        var xs: array<vec4<f32>, COLS_PER_LANE>;
        var part = 0.0;
        for (var c = 0u; c < COLS_PER_LANE; c = c + 1u) {
            let v = col + c * lanes;
            if (live && v < d4) {
                xs[c] = x[e.x_at + r * d4 + v];
                part = part + dot(xs[c], th[c]);
            }
        }
        let row_dot = row_sum(part, t, col, lanes);
        if (live) {
            let rw = rows[e.row_at + r];
            let margin = rw.z + th0 + row_dot;
            var terms: vec2<f32>;
            if (what == VALUE_GRADIENT) {
                if (LOSS == 1u) {
                    terms = logistic_row(margin, rw.x, rw.y);
                } else {
                    terms = squared_row(margin, rw.x, rw.y);
                }
                for (var c = 0u; c < COLS_PER_LANE; c = c + 1u) {
                    acc[c] = acc[c] + terms.y * xs[c];
                }
            } else {
                let d2 = second_derivative(LOSS, margin, rw.y);
                terms = vec2<f32>(d2, d2);
                for (var c = 0u; c < COLS_PER_LANE; c = c + 1u) {
                    acc[c] = acc[c] + d2 * xs[c] * xs[c];
                }
                if (write_curvature && col == 0u) {
                    curvature[e.row_at + r] = d2;
                }
            }
            if (col == 0u) {
                head = head + terms;
            }
        }
    }
    let o = task.out_at;
    // Columns start after (Σℓ, Σℓ') or after Σℓ''.
    let first = o + select(1u, 2u, what == VALUE_GRADIENT);
    for (var c = 0u; c < COLS_PER_LANE; c = c + 1u) {
        if (c * lanes >= d4) {
            break;
        }
        // Σ over the `step` rows of a step: lanes col, col + L, ….
        red4[t] = acc[c];
        workgroupBarrier();
        for (var s = step / 2u; s > 0u; s = s / 2u) {
            if (roff < s) {
                red4[t] = red4[t] + red4[t + s * lanes];
            }
            workgroupBarrier();
        }
        let v = col + c * lanes;
        if (roff == 0u && v < d4) {
            let g = red4[t];
            for (var q = 0u; q < 4u; q = q + 1u) {
                let j = v * 4u + q;
                if (j < e.d) {
                    out[first + j] = g[q];
                }
            }
        }
        workgroupBarrier();
    }
    red2[t] = head;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            red2[t] = red2[t] + red2[t + s];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        if (what == VALUE_GRADIENT) {
            out[o] = red2[0].x;
            out[o + 1u] = red2[0].y;
        } else {
            out[o] = red2[0].y;
        }
    }
}
