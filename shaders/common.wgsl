// Shared by the kernels: prepended to each `shaders/*.wgsl` file when its pipeline is built
// (WGSL has no includes), and in the naga validation test.

// Number of outputs (tasks, records) of a dispatch: arrays are padded to at least one
// element, so their lengths are not used.
struct Outputs {
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// (ℓ, ℓ') of w log(1 + e^{−y m}), in the softplus form that neither overflows nor loses the
// gradient at large margins. Mirrors `logistic_row` of src/objective (f64 there).
fn logistic_row(margin: f32, label: f32, weight: f32) -> vec2<f32> {
    let z = label * margin;
    let e = exp(-abs(z));
    let one_plus = 1.0 + e;
    let sig_neg_z = select(1.0 / one_plus, e / one_plus, z >= 0.0);
    return vec2<f32>(weight * (max(-z, 0.0) + log(one_plus)), -weight * label * sig_neg_z);
}

// (ℓ, ℓ') of w/2 (m − y)². Mirrors `squared_row`.
fn squared_row(margin: f32, label: f32, weight: f32) -> vec2<f32> {
    let r = margin - label;
    return vec2<f32>(0.5 * weight * r * r, weight * r);
}

// ℓ'' of a row: w σ(m) σ(−m) for the logistic loss (LOSS = 1), w for the squared loss.
// Mirrors `Loss::second_derivative`.
fn second_derivative(loss: u32, margin: f32, weight: f32) -> f32 {
    if (loss == 1u) {
        let e = exp(-abs(margin));
        let one_plus = 1.0 + e;
        return weight * e / (one_plus * one_plus);
    }
    return weight;
}
