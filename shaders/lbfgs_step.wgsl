// One L-BFGS step per entity on the device, after `entity_value_gradient` has summed the
// data terms at each running entity's trial point: the prior terms are added, and the
// entity takes the evaluation as `EntityState::observe` of src/solver does (line-search
// decision, acceptance, the next direction and trial point), or, in the first round, as
// `EntityState::start` does. The host only sequences rounds and reads back how many
// entities still run. Each function mirrors the CPU function of the same name (f64 there,
// f32 here); src/eval/gpu/lbfgs.rs gives the buffers.
//
// One workgroup of WG lanes per listed entity; lane t owns coordinates t, t + WG, … of
// every vector of the entity, so lanes never read each other's coordinates and only the
// dot products meet, in `reduce_sum`. The scalar state (`Lbfgs`) is loaded uniformly, so
// that every lane runs the same decisions on the same values.

const WG: u32 = 64u;
// Correction pairs the device keeps at most (`MAX_DEVICE_MEMORY` on the host).
const MAX_MEMORY: u32 = 32u;
const C1: f32 = 1e-4;
const C2: f32 = 0.9;
const MAX_EXTRAPOLATION: f32 = 1e10;
const F32_EPSILON: f32 = 1.1920929e-7;
// f32::MIN_POSITIVE
const MIN_POSITIVE: f32 = 1.1754944e-38;
const STEPS_WITHIN_NOISE: u32 = 5u;

// Stop reasons, as `StopReason` numbers them (`lbfgs.rs`).
const GRADIENT_TOLERANCE: u32 = 0u;
const RELATIVE_REDUCTION: u32 = 1u;
const MAX_ITERATIONS: u32 = 2u;
const LINE_SEARCH_FAILED: u32 = 3u;
const LINE_SEARCH_FAILED_KEPT_PRIOR: u32 = 4u;
const NON_FINITE_START: u32 = 5u;

// Line-search decisions.
const TRY: u32 = 0u;
const ACCEPT: u32 = 1u;
const FAIL: u32 = 2u;

// One entity's scalar state. `coef_at` … `n` are the host's; the rest the kernel's.
struct Lbfgs {
    coef_at: u32,  // θ of the entity in `theta`
    state_at: u32, // its vectors in `state`
    prior_at: u32, // penalty, prior mean, then Q (diagonal: n; full: n×n) in `prior`
    n: u32,        // coefficients (intercept included)
    origin_value: f32,
    origin_slope: f32,
    noise: f32,
    first_step: f32,
    lo_alpha: f32,
    lo_value: f32,
    lo_slope: f32,
    pending: f32,
    hi_alpha: f32,
    hi_value: f32,
    hi_slope: f32,
    has_hi: u32,
    search_evaluations: u32,
    head: u32,
    len: u32,
    gamma: f32,
    f: f32,
    steepest: u32,
    steps_within_noise: u32,
    can_finish: u32,
    initial_loss: f32,
    final_loss: f32,
    iterations: u32,
    evaluations: u32,
    gradient_norm: f32,
    reason: u32,
    done: u32,
    wants_finish: u32,
}

// A listed entity: its tasks' outputs are `tasks` runs of n + 1 values from `out_at`.
struct Slot {
    entity: u32,
    out_at: u32,
    tasks: u32,
    _pad: u32,
}

struct Params {
    count: u32,       // listed entities
    start: u32,       // 1 in the first round: the evaluation is of the starting point
    memory: u32,
    max_iterations: u32,
    max_line_search: u32,
    prior: u32,       // 0: none, 1: diagonal Q, 2: full Q
    noisy: u32,       // 1 when factr · ε is below the evaluator's resolution
    _pad: u32,
    pgtol: f32,
    factr_eps: f32,   // factr · f64 machine epsilon
    resolution: f32,  // 10 × the evaluator's relative precision
    loss_precision: f32,
}

// A point on the line: (α, φ(α), φ'(α)).
struct LinePoint {
    alpha: f32,
    value: f32,
    slope: f32,
}

struct Decision {
    kind: u32,
    next: f32,    // TRY: the next step
    point: LinePoint, // ACCEPT: the accepted point
}

@group(0) @binding(0) var<storage, read> slots: array<Slot>;
@group(0) @binding(1) var<storage, read> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> theta: array<f32>;
@group(0) @binding(3) var<storage, read> prior: array<f32>;
// x, g, p, g_lo, g_trial (n each), the s ring and the y ring (m·n each), ρ (m).
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> lbfgs: array<Lbfgs>;
// [0]: entities still running after this round; then their numbers.
@group(0) @binding(6) var<storage, read_write> running: array<atomic<u32>>;
@group(0) @binding(7) var<uniform> params: Params;

var<workgroup> red: array<f32, WG>;
var<workgroup> shared_state: Lbfgs;
var<workgroup> shared_slot: Slot;

// Offsets of the vectors of an entity in `state`.
fn at_x(s: Lbfgs) -> u32 { return s.state_at; }
fn at_g(s: Lbfgs) -> u32 { return s.state_at + s.n; }
fn at_p(s: Lbfgs) -> u32 { return s.state_at + 2u * s.n; }
fn at_g_lo(s: Lbfgs) -> u32 { return s.state_at + 3u * s.n; }
fn at_g_trial(s: Lbfgs) -> u32 { return s.state_at + 4u * s.n; }
fn at_s(s: Lbfgs, slot: u32) -> u32 { return s.state_at + (5u + slot) * s.n; }
fn at_y(s: Lbfgs, slot: u32) -> u32 { return s.state_at + (5u + params.memory + slot) * s.n; }
fn at_rho(s: Lbfgs) -> u32 { return s.state_at + (5u + 2u * params.memory) * s.n; }

// Σ of every lane's `v`, the same value in every lane.
fn reduce_sum(v: f32, t: u32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var o = WG / 2u; o > 0u; o = o / 2u) {
        if (t < o) {
            red[t] = red[t] + red[t + o];
        }
        workgroupBarrier();
    }
    let s = workgroupUniformLoad(&red[0]);
    workgroupBarrier();
    return s;
}

// max of every lane's `v`, a NaN counted as +∞ (so that a NaN gradient is not small).
fn reduce_max(v: f32, t: u32) -> f32 {
    red[t] = select(v, bitcast<f32>(0x7f800000u), is_nan(v));
    workgroupBarrier();
    for (var o = WG / 2u; o > 0u; o = o / 2u) {
        if (t < o) {
            red[t] = max(red[t], red[t + o]);
        }
        workgroupBarrier();
    }
    let s = workgroupUniformLoad(&red[0]);
    workgroupBarrier();
    return s;
}

// By the bits: WGSL lets a compiler assume that no value is NaN or infinite.
fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// a · b of two vectors of the entity in `state`.
fn dot_state(a: u32, b: u32, n: u32, t: u32) -> f32 {
    var acc = 0.0;
    for (var j = t; j < n; j = j + WG) {
        acc = acc + state[a + j] * state[b + j];
    }
    return reduce_sum(acc, t);
}

// ‖v‖_∞ of a vector in `state`.
fn inf_norm(a: u32, n: u32, t: u32) -> f32 {
    var acc = 0.0;
    for (var j = t; j < n; j = j + WG) {
        let v = abs(state[a + j]);
        acc = max(acc, select(v, bitcast<f32>(0x7f800000u), is_nan(v)));
    }
    return reduce_max(acc, t);
}

// The trial point's loss (returned) and gradient (into g_trial): the tasks' data sums, then
// `½ Σ p θ² + ½ (θ−θ₀)ᵀQ(θ−θ₀)`. Mirrors `EntityProblem::regularizer_value_and_gradient`.
fn regularizer_value_and_gradient(s: Lbfgs, slot: Slot, t: u32) -> f32 {
    let n = s.n;
    let width = n + 1u; // (Σℓ, Σℓ'·1, Σℓ'·x_1 … x_d) per task
    let pen = s.prior_at;
    let mean = s.prior_at + n;
    let q = s.prior_at + 2u * n;
    var acc = 0.0;
    for (var k = t; k < slot.tasks; k = k + WG) {
        acc = acc + out[slot.out_at + k * width];
    }
    for (var j = t; j < n; j = j + WG) {
        var g = 0.0;
        for (var k = 0u; k < slot.tasks; k = k + 1u) {
            g = g + out[slot.out_at + k * width + 1u + j];
        }
        let th = theta[s.coef_at + j];
        acc = acc + 0.5 * prior[pen + j] * th * th;
        g = g + prior[pen + j] * th;
        if (params.prior == 1u) {
            let dev = th - prior[mean + j];
            acc = acc + 0.5 * prior[q + j] * dev * dev;
            g = g + prior[q + j] * dev;
        } else if (params.prior == 2u) {
            var qd = 0.0;
            for (var k = 0u; k < n; k = k + 1u) {
                qd = qd + prior[q + j * n + k] * (theta[s.coef_at + k] - prior[mean + k]);
            }
            acc = acc + 0.5 * (th - prior[mean + j]) * qd;
            g = g + qd;
        }
        state[at_g_trial(s) + j] = g;
    }
    return reduce_sum(acc, t);
}

// Minimiser of the cubic through two points. Mirrors `cubic_minimizer`; `ok` is false
// where the CPU returns None.
struct Cubic {
    ok: bool,
    t: f32,
}

fn cubic_minimizer(a: LinePoint, b: LinePoint) -> Cubic {
    var none = Cubic(false, 0.0);
    if (!(is_finite(a.value) && is_finite(b.value) && is_finite(a.slope) && is_finite(b.slope))) {
        return none;
    }
    let d1 = a.slope + b.slope - 3.0 * (a.value - b.value) / (a.alpha - b.alpha);
    let disc = d1 * d1 - a.slope * b.slope;
    if (disc < 0.0) {
        return none;
    }
    let d2 = sign(b.alpha - a.alpha) * sqrt(disc);
    let denom = b.slope - a.slope + 2.0 * d2;
    if (denom == 0.0) {
        return none;
    }
    let t = b.alpha - (b.alpha - a.alpha) * (b.slope + d2 - d1) / denom;
    return Cubic(is_finite(t), t);
}

fn give_up(s: Lbfgs) -> Decision {
    if (s.lo_alpha > 0.0) {
        return Decision(ACCEPT, 0.0, LinePoint(s.lo_alpha, s.lo_value, s.lo_slope));
    }
    return Decision(FAIL, 0.0, LinePoint(0.0, 0.0, 0.0));
}

// Feed the evaluation of the pending step. Mirrors `LineSearch::decide`.
fn decide(s: ptr<function, Lbfgs>, p: LinePoint) -> Decision {
    (*s).search_evaluations = (*s).search_evaluations + 1u;
    let o = LinePoint(0.0, (*s).origin_value, (*s).origin_slope);
    let armijo = p.value <= o.value + C1 * p.alpha * o.slope;
    let curvature = p.slope >= C2 * o.slope;
    let approx_wolfe = p.value <= o.value + (*s).noise
        && (2.0 * C1 - 1.0) * o.slope >= p.slope && curvature;
    let finite = is_finite(p.value) && is_finite(p.slope);
    if (finite && ((armijo && curvature) || approx_wolfe)) {
        return Decision(ACCEPT, 0.0, p);
    }
    if (!finite || !armijo || p.value > (*s).lo_value) {
        (*s).hi_alpha = p.alpha;
        (*s).hi_value = p.value;
        (*s).hi_slope = p.slope;
        (*s).has_hi = 1u;
    } else {
        (*s).lo_alpha = p.alpha;
        (*s).lo_value = p.value;
        (*s).lo_slope = p.slope;
    }
    if ((*s).search_evaluations >= params.max_line_search) {
        return give_up(*s);
    }
    var next: f32;
    if ((*s).has_hi == 0u) {
        next = min(4.0 * p.alpha, MAX_EXTRAPOLATION * (*s).first_step);
    } else {
        let lo = LinePoint((*s).lo_alpha, (*s).lo_value, (*s).lo_slope);
        let hi = LinePoint((*s).hi_alpha, (*s).hi_value, (*s).hi_slope);
        let width = hi.alpha - lo.alpha;
        if (width <= F32_EPSILON * max(hi.alpha, MIN_POSITIVE)) {
            return give_up(*s);
        }
        let a = lo.alpha + 0.1 * width;
        let b = hi.alpha - 0.1 * width;
        let c = cubic_minimizer(lo, hi);
        if (c.ok) {
            next = clamp(c.t, a, b);
        } else {
            next = 0.5 * (lo.alpha + hi.alpha);
        }
    }
    return Decision(TRY, next, p);
}

// Store the pair (s, y) — s = α p and y = g_new − g, formed on the fly — if it has positive
// curvature, and take the step: x += s, g = g_new. Mirrors `LbfgsMemory::push` and the
// update of `EntityState::accept`.
fn memory_push(s: ptr<function, Lbfgs>, alpha: f32, g_new: u32, t: u32) {
    let n = (*s).n;
    let st = *s;
    var sy = 0.0;
    var yy = 0.0;
    for (var j = t; j < n; j = j + WG) {
        let sj = alpha * state[at_p(st) + j];
        let yj = state[g_new + j] - state[at_g(st) + j];
        sy = sy + sj * yj;
        yy = yy + yj * yj;
    }
    sy = reduce_sum(sy, t);
    yy = reduce_sum(yy, t);
    let m = params.memory;
    let keep = m > 0u && is_finite(sy) && sy > F32_EPSILON * yy;
    var slot = 0u;
    if (keep) {
        slot = ((*s).head + (*s).len) % m;
        if ((*s).len == m) {
            (*s).head = ((*s).head + 1u) % m;
        } else {
            (*s).len = (*s).len + 1u;
        }
        (*s).gamma = sy / yy;
        if (t == 0u) {
            state[at_rho(st) + slot] = 1.0 / sy;
        }
    }
    // Every lane reads ρ in the next direction.
    storageBarrier();
    for (var j = t; j < n; j = j + WG) {
        let sj = alpha * state[at_p(st) + j];
        let gj = state[g_new + j];
        if (keep) {
            state[at_s(st, slot) + j] = sj;
            state[at_y(st, slot) + j] = gj - state[at_g(st) + j];
        }
        state[at_x(st) + j] = state[at_x(st) + j] + sj;
        state[at_g(st) + j] = gj;
    }
}

// Write −H g into p by the two-loop recursion. Mirrors `LbfgsMemory::direction`.
fn memory_direction(s: Lbfgs, t: u32) {
    let n = s.n;
    let m = params.memory;
    for (var j = t; j < n; j = j + WG) {
        state[at_p(s) + j] = -state[at_g(s) + j];
    }
    if (s.len == 0u) {
        return;
    }
    var alpha: array<f32, MAX_MEMORY>;
    for (var i = 0u; i < s.len; i = i + 1u) {
        let k = s.len - 1u - i;
        let slot = (s.head + k) % m;
        let a = state[at_rho(s) + slot] * dot_state(at_s(s, slot), at_p(s), n, t);
        alpha[k] = a;
        for (var j = t; j < n; j = j + WG) {
            state[at_p(s) + j] = state[at_p(s) + j] - a * state[at_y(s, slot) + j];
        }
    }
    for (var j = t; j < n; j = j + WG) {
        state[at_p(s) + j] = s.gamma * state[at_p(s) + j];
    }
    for (var k = 0u; k < s.len; k = k + 1u) {
        let slot = (s.head + k) % m;
        let b = state[at_rho(s) + slot] * dot_state(at_y(s, slot), at_p(s), n, t);
        for (var j = t; j < n; j = j + WG) {
            state[at_p(s) + j] = state[at_p(s) + j] + (alpha[k] - b) * state[at_s(s, slot) + j];
        }
    }
}

// θ = x + α p, the trial point the next round evaluates.
fn write_trial(s: Lbfgs, t: u32) {
    for (var j = t; j < s.n; j = j + WG) {
        theta[s.coef_at + j] = state[at_x(s) + j] + s.pending * state[at_p(s) + j];
    }
}

// The next direction and its line search. Mirrors `EntityState::begin_search`.
fn begin_search(s: ptr<function, Lbfgs>, t: u32) {
    let n = (*s).n;
    memory_direction(*s, t);
    var slope = dot_state(at_g(*s), at_p(*s), n, t);
    (*s).steepest = select(0u, 1u, (*s).len == 0u);
    if (is_nan(slope) || slope >= 0.0) {
        (*s).len = 0u;
        (*s).head = 0u;
        (*s).steepest = 1u;
        for (var j = t; j < n; j = j + WG) {
            state[at_p(*s) + j] = -state[at_g(*s) + j];
        }
        slope = dot_state(at_g(*s), at_p(*s), n, t);
    }
    var first = 1.0;
    if ((*s).steepest == 1u) {
        first = min(1.0 / sqrt(dot_state(at_p(*s), at_p(*s), n, t)), 1.0);
    }
    (*s).origin_value = (*s).f;
    (*s).origin_slope = slope;
    (*s).noise = 10.0 * params.loss_precision * max(abs((*s).f), 1.0);
    (*s).lo_alpha = 0.0;
    (*s).lo_value = (*s).f;
    (*s).lo_slope = slope;
    (*s).has_hi = 0u;
    (*s).first_step = first;
    (*s).pending = first;
    (*s).search_evaluations = 0u;
    write_trial(*s, t);
}

// Stop: the entity's x goes to `theta`, its report is closed. Mirrors `EntityState::finish`.
fn finish(s: ptr<function, Lbfgs>, reason: u32, t: u32) {
    (*s).reason = reason;
    (*s).final_loss = (*s).f;
    (*s).gradient_norm = inf_norm(at_g(*s), (*s).n, t);
    (*s).done = 1u;
    for (var j = t; j < (*s).n; j = j + WG) {
        theta[(*s).coef_at + j] = state[at_x(*s) + j];
    }
}

// Stop for `reason`; the host goes on in f64 when it can. Mirrors `EntityState::stop`.
fn stop(s: ptr<function, Lbfgs>, reason: u32, t: u32) {
    (*s).wants_finish = (*s).can_finish;
    (*s).can_finish = 0u;
    finish(s, reason, t);
}

// Stop by the rules for a point just evaluated, or begin the next line search. Mirrors
// `EntityState::go_on`.
fn go_on(s: ptr<function, Lbfgs>, t: u32) {
    let n = (*s).n;
    let gnorm = inf_norm(at_g(*s), n, t);
    if (!is_finite((*s).f) || !is_finite(gnorm)) {
        if ((*s).iterations == 0u) {
            stop(s, NON_FINITE_START, t);
        } else {
            stop(s, LINE_SEARCH_FAILED, t);
        }
    } else if (gnorm <= params.pgtol) {
        stop(s, GRADIENT_TOLERANCE, t);
    } else if ((*s).iterations >= params.max_iterations) {
        finish(s, MAX_ITERATIONS, t);
    } else {
        begin_search(s, t);
    }
}

// Take the accepted point (its gradient at `g_new`). Mirrors `EntityState::accept`.
fn accept(s: ptr<function, Lbfgs>, p: LinePoint, g_new: u32, t: u32) {
    memory_push(s, p.alpha, g_new, t);
    let f_old = (*s).f;
    (*s).f = p.value;
    (*s).iterations = (*s).iterations + 1u;
    let rel = (f_old - (*s).f) / max(max(abs(f_old), abs((*s).f)), 1.0);
    var reduction_stop = false;
    if (params.noisy == 0u) {
        reduction_stop = rel <= params.factr_eps;
    } else {
        if (abs(rel) <= params.resolution) {
            (*s).steps_within_noise = (*s).steps_within_noise + 1u;
        } else {
            (*s).steps_within_noise = 0u;
        }
        reduction_stop = (*s).steps_within_noise >= STEPS_WITHIN_NOISE;
    }
    if (inf_norm(at_g(*s), (*s).n, t) <= params.pgtol) {
        stop(s, GRADIENT_TOLERANCE, t);
    } else if (reduction_stop) {
        stop(s, RELATIVE_REDUCTION, t);
    } else if ((*s).iterations >= params.max_iterations) {
        finish(s, MAX_ITERATIONS, t);
    } else {
        begin_search(s, t);
    }
}

// Take the evaluation of the pending trial point. Mirrors `EntityState::observe`.
fn observe(s: ptr<function, Lbfgs>, f: f32, t: u32) {
    let n = (*s).n;
    (*s).evaluations = (*s).evaluations + 1u;
    let alpha = (*s).pending;
    var slope = dot_state(at_g_trial(*s), at_p(*s), n, t);
    if (!is_finite(f)) {
        slope = bitcast<f32>(0x7fc00000u);
    }
    let previous_lo = (*s).lo_alpha;
    let decision = decide(s, LinePoint(alpha, f, slope));
    if ((*s).lo_alpha != previous_lo && (*s).lo_alpha == alpha) {
        for (var j = t; j < n; j = j + WG) {
            state[at_g_lo(*s) + j] = state[at_g_trial(*s) + j];
        }
    }
    if (decision.kind == TRY) {
        (*s).pending = decision.next;
        write_trial(*s, t);
    } else if (decision.kind == ACCEPT) {
        if (decision.point.alpha != alpha) {
            accept(s, decision.point, at_g_lo(*s), t);
        } else {
            accept(s, decision.point, at_g_trial(*s), t);
        }
    } else if ((*s).steepest == 0u) {
        (*s).len = 0u;
        (*s).head = 0u;
        begin_search(s, t);
    } else if ((*s).iterations == 0u) {
        stop(s, LINE_SEARCH_FAILED_KEPT_PRIOR, t);
    } else {
        stop(s, LINE_SEARCH_FAILED, t);
    }
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let k = wid.x + wid.y * groups.x;
    if (k >= params.count) {
        return;
    }
    if (t == 0u) {
        shared_slot = slots[k];
        shared_state = lbfgs[shared_slot.entity];
    }
    let slot = workgroupUniformLoad(&shared_slot);
    var s = workgroupUniformLoad(&shared_state);
    if (s.done != 0u) {
        return;
    }
    let f = regularizer_value_and_gradient(s, slot, t);
    storageBarrier();
    if (params.start == 1u) {
        // EntityState::start: the evaluation is of x itself.
        for (var j = t; j < s.n; j = j + WG) {
            state[at_x(s) + j] = theta[s.coef_at + j];
            state[at_g(s) + j] = state[at_g_trial(s) + j];
        }
        s.f = f;
        s.initial_loss = f;
        s.evaluations = 1u;
        s.steepest = 1u;
        go_on(&s, t);
    } else {
        observe(&s, f, t);
    }
    if (t == 0u) {
        lbfgs[slot.entity] = s;
        if (s.done == 0u) {
            let at = atomicAdd(&running[0], 1u);
            atomicStore(&running[1u + at], slot.entity);
        }
    }
}
