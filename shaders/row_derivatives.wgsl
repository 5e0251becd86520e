// Per-row margin, loss and first derivative (and, when asked, the second) of every row of
// the running entities.
// Mirrors `EntityProblem::margin`, `logistic_row` and `squared_row` of src/objective (f64 there,
// f32 here). One invocation per row; the grid may be two-dimensional for many rows.

struct Row {
    label: f32,   // ±1 for the logistic loss, the target for the squared loss
    weight: f32,
    offset: f32,
    entity: u32,  // index of the row's entity in the batch
}

// 0: squared loss, 1: logistic loss (set when the pipeline is built).
override LOSS: u32 = 1u;
// 1: also write ℓ'' per row (for the Hessian diagonal of the posterior).
override WITH_D2: u32 = 0u;

@group(0) @binding(0) var<storage, read> rows: array<Row>;
@group(0) @binding(1) var<storage, read> nz_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> cols: array<u32>;
@group(0) @binding(3) var<storage, read> vals: array<f32>;
@group(0) @binding(4) var<storage, read> coef_ptr: array<u32>;
@group(0) @binding(5) var<storage, read> running: array<u32>;
@group(0) @binding(6) var<storage, read> theta: array<f32>;
@group(0) @binding(7) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(8) var<storage, read_write> row_d1: array<f32>;
@group(0) @binding(9) var<uniform> counts: Counts;
@group(0) @binding(10) var<storage, read_write> row_d2: array<f32>;

// (ℓ, ℓ') of w log(1 + e^{−y m}), in the softplus form that neither overflows nor
// loses the gradient at large margins.
fn logistic_row(margin: f32, label: f32, weight: f32) -> vec2<f32> {
    let z = label * margin;
    let e = exp(-abs(z));
    let one_plus = 1.0 + e;
    let sig_neg_z = select(1.0 / one_plus, e / one_plus, z >= 0.0);
    return vec2<f32>(weight * (max(-z, 0.0) + log(one_plus)), -weight * label * sig_neg_z);
}

// ℓ'' of a row: w σ(m) σ(−m) for the logistic loss, w for the squared loss. Mirrors
// `Loss::second_derivative`.
fn second_derivative(margin: f32, weight: f32) -> f32 {
    if (LOSS == 1u) {
        let e = exp(-abs(margin));
        let one_plus = 1.0 + e;
        return weight * e / (one_plus * one_plus);
    }
    return weight;
}

// (ℓ, ℓ') of w/2 (m − y)².
fn squared_row(margin: f32, label: f32, weight: f32) -> vec2<f32> {
    let r = margin - label;
    return vec2<f32>(0.5 * weight * r * r, weight * r);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i >= counts.rows) {
        return;
    }
    let row = rows[i];
    if (running[row.entity] == 0u) {
        return;
    }
    let base = coef_ptr[row.entity];
    var margin = row.offset;
    for (var k = nz_ptr[i]; k < nz_ptr[i + 1u]; k = k + 1u) {
        margin = margin + vals[k] * theta[base + cols[k]];
    }
    var r: vec2<f32>;
    if (LOSS == 1u) {
        r = logistic_row(margin, row.label, row.weight);
    } else {
        r = squared_row(margin, row.label, row.weight);
    }
    row_loss[i] = r.x;
    row_d1[i] = r.y;
    if (WITH_D2 == 1u) {
        row_d2[i] = second_derivative(margin, row.weight);
    }
}
