//! Lockstep batched L-BFGS (DESIGN §1, "Solver").
//!
//! Every entity of a batch owns its L-BFGS state in f64. A round gathers the pending
//! trial point of every running entity, evaluates them all with one
//! [`BatchEvaluator::evaluate`] call, then lets each entity accept, backtrack or finish
//! (`line_search.rs`). Finished entities leave the active list, so later rounds evaluate
//! only the entities still running.
//!
//! Stopping follows scipy's L-BFGS-B (`fmin_l_bfgs_b`) so that settings carry over:
//! after an accepted step, stop when `‖∇F‖_∞ ≤ pgtol`; else when
//! `(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ factr · ε_mach`; else when the iteration
//! count reaches `max_iterations`. A starting point with `‖∇F‖_∞ ≤ pgtol` stops at once.
//! When the evaluator cannot resolve the reduction asked for (`factr · ε` below ten times
//! its [`BatchEvaluator::loss_precision`], as for f32 GPU evaluations), a step whose loss
//! change is within that noise is no evidence of convergence: the entity goes on (its line
//! search accepts on the slope) and stops for relative reduction only after five such
//! steps in a row.
//! When a line search fails, the memory is dropped and steepest descent is tried once;
//! if that fails too the entity stops at its best point, which is its starting point (the
//! prior) when no step was ever accepted.
//!
//! Entities already solved — one row each, by [`solve_one_row`] — can be handed in settled
//! ([`minimize_settled`]): they are never evaluated, and keep their optimum and report.
//!
//! **The f64 finish** ([`minimize_with_finish`]). Given a more precise evaluator, an entity
//! that would stop for any reason but its iteration limit is evaluated by it at its current
//! point instead and goes on from there, its L-BFGS memory kept, under that evaluator's
//! precision, until it stops by the same rules as a run on the precise evaluator alone
//! (but that the relative-reduction test waits for the second step). So an f32 GPU run
//! ends with every entity meeting the f64 stopping rule.

mod lbfgs_memory;
mod line_search;
mod one_row;

pub use lbfgs_memory::LbfgsMemory;
pub use line_search::{LineDecision, LinePoint, LineSearch};
pub use one_row::{solve_one_row, solve_one_row_into, OneRowScratch};

use crate::eval::{entity_slices_mut, BatchEvaluator, EvalError};
use crate::vector::{dot, inf_norm};
use rayon::prelude::*;
use std::fmt;
use std::time::Instant;

/// Accepted steps in a row with a loss change within an imprecise evaluator's noise after
/// which the entity stops (see [`minimize`]).
const STEPS_WITHIN_NOISE: usize = 5;

/// Steps an entity handed to the precise evaluator takes before a small relative
/// reduction may stop it (see [`minimize_with_finish`]).
const FRESH_PAIRS: usize = 2;

/// Entities per rayon task of the solver's per-entity work: below this a batch runs on
/// the calling thread (a CPU part is already one task of a parallel loop).
const ENTITIES_PER_TASK: usize = 256;

/// L-BFGS settings, with scipy's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsOptions {
    /// Number of correction pairs kept (default 10).
    pub memory: usize,
    /// Relative-reduction tolerance in units of machine epsilon (default 1e7).
    pub factr: f64,
    /// Gradient infinity-norm tolerance (default 1e-5).
    pub pgtol: f64,
    /// Iteration limit per entity (default 15000).
    pub max_iterations: usize,
    /// Evaluations allowed per line search (default 20).
    pub max_line_search: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            memory: 10,
            factr: 1e7,
            pgtol: 1e-5,
            max_iterations: 15000,
            max_line_search: 20,
        }
    }
}

/// Why an entity stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// `‖∇F‖_∞ ≤ pgtol`.
    GradientTolerance,
    /// Relative reduction of F below `factr · ε`.
    RelativeReduction,
    /// `max_iterations` reached.
    MaxIterations,
    /// The line search failed after progress; the best point found is kept.
    LineSearchFailed,
    /// The line search failed before any progress; the starting point (the prior) is kept.
    LineSearchFailedKeptPrior,
    /// The objective is not finite at the starting point; the starting point is kept.
    NonFiniteStart,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::GradientTolerance => "gradient-tolerance",
            StopReason::RelativeReduction => "relative-reduction",
            StopReason::MaxIterations => "max-iterations",
            StopReason::LineSearchFailed => "line-search-failed",
            StopReason::LineSearchFailedKeptPrior => "line-search-failed-kept-prior",
            StopReason::NonFiniteStart => "non-finite-start-kept-prior",
        }
    }

    /// Whether the entity met a convergence test (as opposed to a limit or a failure).
    pub fn converged(self) -> bool {
        matches!(
            self,
            StopReason::GradientTolerance | StopReason::RelativeReduction
        )
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the solver reports for one entity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveReport {
    pub initial_loss: f64,
    pub final_loss: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub gradient_norm: f64,
    pub reason: StopReason,
    /// Whether the entity was finished by the precise evaluator of [`minimize_with_finish`].
    pub finished_precisely: bool,
}

/// Optimum and reports of a batch.
#[derive(Debug, Clone)]
pub struct SolveResult {
    /// Final coefficients, laid out by the evaluator's `coef_ptr`.
    pub theta: Vec<f64>,
    pub reports: Vec<SolveReport>,
    /// Batched evaluation rounds.
    pub rounds: usize,
    /// Wall-clock seconds spent inside the evaluators (the rest of a solve is L-BFGS work).
    pub evaluate_seconds: f64,
    /// Wall-clock seconds spent inside the precise evaluator of [`minimize_with_finish`].
    pub finish_seconds: f64,
}

/// L-BFGS correction pairs `(s, y)` of `n` values each, oldest first, in one allocation:
/// `s₀, y₀, s₁, y₁, …`.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrectionPairs {
    pub n: usize,
    pub values: Vec<f64>,
}

impl CorrectionPairs {
    /// The pairs, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&[f64], &[f64])> {
        self.values
            .chunks_exact(2 * self.n.max(1))
            .map(|pair| pair.split_at(self.n))
    }
}

/// An entity that goes on where another run left it (the device solver's f32 run, for the
/// f64 finish): its correction pairs `(s, y)`, oldest first, and its report so far. Its
/// point is its start; it is evaluated there and goes on as an entity handed to the
/// precise evaluator of [`minimize_with_finish`] does, its memory kept.
#[derive(Debug, Clone)]
pub struct Resume {
    pub pairs: CorrectionPairs,
    pub report: SolveReport,
}

/// Per-entity solver state; its vectors are slices of one allocation per batch
/// ([`EntityState::storage_len`] values per entity).
struct EntityState<'a> {
    x: &'a mut [f64],
    f: f64,
    g: &'a mut [f64],
    p: &'a mut [f64],
    /// Gradient at the line search's best point so far (for `Accept(lo)`).
    g_lo: &'a mut [f64],
    /// Scratch: the step `s` and gradient change `y` of an accepted step; two-loop weights.
    s: &'a mut [f64],
    y: &'a mut [f64],
    alpha: &'a mut [f64],
    memory: LbfgsMemory<'a>,
    search: LineSearch,
    /// Whether the current search direction is steepest descent after a reset.
    steepest: bool,
    /// Accepted steps in a row whose loss change was within the evaluator's noise.
    steps_within_noise: usize,
    /// Relative precision of the losses of the evaluator the entity is on.
    precision: f64,
    /// Whether a stop is to hand the entity to the precise evaluator (not done yet).
    can_finish: bool,
    /// Whether it stopped and waits for the precise evaluator's value at `x`.
    wants_finish: bool,
    /// Steps accepted since the hand-over to the precise evaluator.
    steps_since_hand_over: usize,
    report: SolveReport,
    done: bool,
}

/// Minimise every entity of the evaluator's batch from `start` (laid out by `coef_ptr`).
/// `progress` is called after each round with the number of entities finished so far.
pub fn minimize(
    evaluator: &mut dyn BatchEvaluator,
    start: &[f64],
    options: &LbfgsOptions,
    progress: impl FnMut(usize),
) -> Result<SolveResult, EvalError> {
    minimize_with_finish(evaluator, None, start, options, progress)
}

/// [`minimize`] on `evaluator`, with entities finished on `finish` (of the same batch and
/// layout, more precise) as the module doc says. Without `finish`, or when `evaluator` is
/// at least as precise, this is [`minimize`].
pub fn minimize_with_finish(
    evaluator: &mut dyn BatchEvaluator,
    finish: Option<&mut dyn BatchEvaluator>,
    start: &[f64],
    options: &LbfgsOptions,
    progress: impl FnMut(usize),
) -> Result<SolveResult, EvalError> {
    let n = evaluator.coef_ptr().len() - 1;
    minimize_settled(evaluator, finish, start, vec![None; n], options, progress)
}

/// [`minimize_with_finish`] for the entities whose `settled[e]` is `None`; the others are
/// solved already (their optimum and report, as [`solve_one_row`] gives them) and are
/// never evaluated. Each entity's L-BFGS is its own, so which entities are settled
/// changes no other entity's result.
pub fn minimize_settled(
    evaluator: &mut dyn BatchEvaluator,
    finish: Option<&mut dyn BatchEvaluator>,
    start: &[f64],
    settled: Vec<Option<(Vec<f64>, SolveReport)>>,
    options: &LbfgsOptions,
    progress: impl FnMut(usize),
) -> Result<SolveResult, EvalError> {
    let resumed = vec![None; settled.len()];
    minimize_resumed(
        evaluator, finish, start, settled, resumed, options, progress,
    )
}

/// [`minimize_settled`], with the entities whose `resumed[e]` is given going on from
/// their start with their memory and report (see [`Resume`]).
pub fn minimize_resumed(
    evaluator: &mut dyn BatchEvaluator,
    mut finish: Option<&mut dyn BatchEvaluator>,
    start: &[f64],
    settled: Vec<Option<(Vec<f64>, SolveReport)>>,
    resumed: Vec<Option<Resume>>,
    options: &LbfgsOptions,
    mut progress: impl FnMut(usize),
) -> Result<SolveResult, EvalError> {
    let coef_ptr = evaluator.coef_ptr().to_vec();
    let n = coef_ptr.len() - 1;
    assert_eq!(settled.len(), n, "one entry per entity");
    assert_eq!(
        start.len(),
        coef_ptr[n],
        "start point does not match the coefficient layout"
    );
    let precision = evaluator.loss_precision();
    if finish
        .as_ref()
        .is_some_and(|f| f.loss_precision() >= precision)
    {
        finish = None;
    }
    let finish_precision = finish.as_ref().map_or(precision, |f| f.loss_precision());

    let mut trial = start.to_vec();
    let mut trial_loss = vec![0.0; n];
    let mut trial_grad = vec![0.0; start.len()];
    let mut active: Vec<usize> = (0..n).filter(|&e| settled[e].is_none()).collect();
    let (mut evaluate_seconds, mut finish_seconds) = (0.0, 0.0);
    let mut rounds = 0;
    if !active.is_empty() {
        let clock = Instant::now();
        evaluator.evaluate(&active, &trial, &mut trial_loss, &mut trial_grad)?;
        evaluate_seconds += clock.elapsed().as_secs_f64();
        rounds = 1;
    }

    // Every entity's vectors and L-BFGS memory in one allocation, cut into per-entity
    // pieces; a settled entity keeps only its optimum.
    let mut storage_ptr = Vec::with_capacity(n + 1);
    storage_ptr.push(0);
    for e in 0..n {
        let d = coef_ptr[e + 1] - coef_ptr[e];
        let len = match settled[e] {
            Some(_) => d,
            None => EntityState::storage_len(d, options.memory),
        };
        storage_ptr.push(storage_ptr[e] + len);
    }
    let mut storage = vec![0.0; storage_ptr[n]];
    let every: Vec<usize> = (0..n).collect();
    let pieces = entity_slices_mut(&storage_ptr, &every, &mut storage);
    let can_finish = finish.is_some();
    let mut states: Vec<EntityState> = pieces
        .into_par_iter()
        .zip(settled)
        .zip(resumed)
        .with_min_len(ENTITIES_PER_TASK)
        .enumerate()
        .map(|(e, ((piece, settled), resumed))| {
            if let Some((optimum, report)) = settled {
                return EntityState::settled(&optimum, report, piece);
            }
            let r = coef_ptr[e]..coef_ptr[e + 1];
            let mut state = EntityState::start(
                &start[r.clone()],
                trial_loss[e],
                &trial_grad[r],
                options,
                precision,
                can_finish,
                piece,
            );
            if let Some(resumed) = resumed {
                state.resume(resumed);
            }
            state.go_on(options);
            state
        })
        .collect();
    let mut round = Round {
        coef_ptr: &coef_ptr,
        options,
        finish_precision,
        precise: Vec::new(),
    };
    let spent = round.end(finish.as_deref_mut(), &mut states, &mut active, &mut trial)?;
    (finish_seconds, evaluate_seconds) = (finish_seconds + spent, evaluate_seconds + spent);
    progress(n - active.len());

    while !active.is_empty() {
        // Entities on the precise evaluator are evaluated by it; the rest by `evaluator`.
        let clock = Instant::now();
        match finish.as_deref_mut() {
            Some(finish) if !round.precise.is_empty() => {
                let precise = &mut round.precise;
                precise.retain(|&e| !states[e].done);
                let coarse: Vec<usize> = active
                    .iter()
                    .copied()
                    .filter(|&e| !states[e].precise())
                    .collect();
                if !coarse.is_empty() {
                    evaluator.evaluate(&coarse, &trial, &mut trial_loss, &mut trial_grad)?;
                }
                let fine = Instant::now();
                if !precise.is_empty() {
                    finish.evaluate(precise, &trial, &mut trial_loss, &mut trial_grad)?;
                }
                finish_seconds += fine.elapsed().as_secs_f64();
            }
            _ => evaluator.evaluate(&active, &trial, &mut trial_loss, &mut trial_grad)?,
        }
        evaluate_seconds += clock.elapsed().as_secs_f64();
        rounds += 1;
        {
            let mut running: Vec<&mut EntityState> =
                states.iter_mut().filter(|s| !s.done).collect();
            debug_assert_eq!(running.len(), active.len());
            running
                .par_iter_mut()
                .zip(active.par_iter())
                .with_min_len(ENTITIES_PER_TASK)
                .for_each(|(s, &e)| {
                    let r = coef_ptr[e]..coef_ptr[e + 1];
                    s.observe(trial_loss[e], &trial_grad[r], options);
                });
        }
        let spent = round.end(finish.as_deref_mut(), &mut states, &mut active, &mut trial)?;
        (finish_seconds, evaluate_seconds) = (finish_seconds + spent, evaluate_seconds + spent);
        progress(n - active.len());
    }

    let mut theta = vec![0.0; start.len()];
    for (e, s) in states.iter().enumerate() {
        theta[coef_ptr[e]..coef_ptr[e + 1]].copy_from_slice(s.x);
    }
    Ok(SolveResult {
        theta,
        reports: states.iter().map(|s| s.report).collect(),
        rounds,
        evaluate_seconds,
        finish_seconds,
    })
}

/// What the end of every round needs: the layout, the settings, and which entities are
/// on the precise evaluator (ascending).
struct Round<'a> {
    coef_ptr: &'a [usize],
    options: &'a LbfgsOptions,
    finish_precision: f64,
    precise: Vec<usize>,
}

impl Round<'_> {
    /// Hand the entities that stopped and asked for it to the precise evaluator, write the
    /// next trial points and drop the finished entities from `active`. Returns the seconds
    /// spent in the precise evaluator.
    fn end(
        &mut self,
        finish: Option<&mut (dyn BatchEvaluator + '_)>,
        states: &mut [EntityState],
        active: &mut Vec<usize>,
        trial: &mut [f64],
    ) -> Result<f64, EvalError> {
        let clock = Instant::now();
        if let Some(finish) = finish {
            self.hand_over(finish, states, active)?;
        }
        let spent = clock.elapsed().as_secs_f64();
        write_trials(states, self.coef_ptr, active, trial);
        active.retain(|&e| !states[e].done);
        Ok(spent)
    }

    /// Evaluate the entities of `active` that asked for the precise evaluator at their
    /// current point, and let each go on from there on it.
    fn hand_over(
        &mut self,
        finish: &mut (dyn BatchEvaluator + '_),
        states: &mut [EntityState],
        active: &[usize],
    ) -> Result<(), EvalError> {
        let coef_ptr = self.coef_ptr;
        let asking: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&e| states[e].wants_finish)
            .collect();
        if asking.is_empty() {
            return Ok(());
        }
        let mut x = vec![0.0; coef_ptr[coef_ptr.len() - 1]];
        let (mut loss, mut grad) = (vec![0.0; states.len()], vec![0.0; x.len()]);
        for &e in &asking {
            x[coef_ptr[e]..coef_ptr[e + 1]].copy_from_slice(states[e].x);
        }
        finish.evaluate(&asking, &x, &mut loss, &mut grad)?;
        for &e in &asking {
            let g = &grad[coef_ptr[e]..coef_ptr[e + 1]];
            states[e].take_precise(loss[e], g, self.options, self.finish_precision);
        }
        self.precise.extend(&asking);
        self.precise.sort_unstable();
        Ok(())
    }
}

/// Write `x + α p` of every running entity in `active` into the flat trial buffer.
fn write_trials(
    states: &mut [EntityState],
    coef_ptr: &[usize],
    active: &[usize],
    trial: &mut [f64],
) {
    let slices = entity_slices_mut(coef_ptr, active, trial);
    slices
        .into_par_iter()
        .zip(active.par_iter())
        .with_min_len(ENTITIES_PER_TASK)
        .for_each(|(t, &e)| {
            let s = &states[e];
            if !s.done {
                let alpha = s.pending_step();
                for ((tj, xj), pj) in t.iter_mut().zip(s.x.iter()).zip(s.p.iter()) {
                    *tj = xj + alpha * pj;
                }
            }
        });
}

impl<'a> EntityState<'a> {
    /// Values of storage an entity of `d` coefficients takes with `m` correction pairs:
    /// six vectors of `d`, `m` two-loop weights and the memory.
    fn storage_len(d: usize, m: usize) -> usize {
        6 * d + m + LbfgsMemory::storage_len(d, m)
    }

    fn start(
        x0: &[f64],
        f0: f64,
        g0: &[f64],
        options: &LbfgsOptions,
        precision: f64,
        can_finish: bool,
        storage: &'a mut [f64],
    ) -> Self {
        let d = x0.len();
        let gnorm = inf_norm(g0);
        let (x, rest) = storage.split_at_mut(d);
        let (g, rest) = rest.split_at_mut(d);
        let (p, rest) = rest.split_at_mut(d);
        let (g_lo, rest) = rest.split_at_mut(d);
        let (s, rest) = rest.split_at_mut(d);
        let (y, rest) = rest.split_at_mut(d);
        let (alpha, rest) = rest.split_at_mut(options.memory);
        x.copy_from_slice(x0);
        g.copy_from_slice(g0);
        EntityState {
            x,
            f: f0,
            g,
            p,
            g_lo,
            s,
            y,
            alpha,
            memory: LbfgsMemory::new(d, options.memory, rest),
            search: LineSearch::new(f0, 0.0, 0.0, 1.0, 1),
            steepest: true,
            steps_within_noise: 0,
            precision,
            can_finish,
            wants_finish: false,
            steps_since_hand_over: 0,
            report: SolveReport {
                initial_loss: f0,
                final_loss: f0,
                iterations: 0,
                evaluations: 1,
                gradient_norm: gnorm,
                reason: StopReason::GradientTolerance,
                finished_precisely: false,
            },
            done: false,
        }
    }

    /// An entity solved already, at `optimum` with `report`: it is done, and `storage`
    /// (of its length) holds only its point.
    fn settled(optimum: &[f64], report: SolveReport, storage: &'a mut [f64]) -> Self {
        storage.copy_from_slice(optimum);
        EntityState {
            x: storage,
            f: report.final_loss,
            g: &mut [],
            p: &mut [],
            g_lo: &mut [],
            s: &mut [],
            y: &mut [],
            alpha: &mut [],
            memory: LbfgsMemory::new(0, 0, &mut []),
            search: LineSearch::new(report.final_loss, 0.0, 0.0, 1.0, 1),
            steepest: true,
            steps_within_noise: 0,
            precision: 0.0,
            can_finish: false,
            wants_finish: false,
            steps_since_hand_over: 0,
            report,
            done: true,
        }
    }

    /// Take the memory and report of a run that left the entity at its start; it is on
    /// the precise evaluator from here (as after [`Self::take_precise`]).
    fn resume(&mut self, resumed: Resume) {
        for (s, y) in resumed.pairs.iter() {
            self.memory.push(s, y);
        }
        let evaluations = resumed.report.evaluations + 1;
        self.report = SolveReport {
            evaluations,
            finished_precisely: true,
            ..resumed.report
        };
        self.steps_since_hand_over = 0;
    }

    /// Stop by the rules for a point just evaluated (the start, a resume or a hand-over),
    /// or begin the next line search.
    fn go_on(&mut self, options: &LbfgsOptions) {
        if !self.f.is_finite() || !self.g.iter().all(|v| v.is_finite()) {
            self.stop(match self.report.iterations {
                0 => StopReason::NonFiniteStart,
                _ => StopReason::LineSearchFailed,
            });
        } else if inf_norm(self.g) <= options.pgtol {
            self.stop(StopReason::GradientTolerance);
        } else if self.report.iterations >= options.max_iterations {
            self.finish(StopReason::MaxIterations);
        } else {
            self.begin_search(options);
        }
    }

    /// Whether the entity is evaluated by the precise evaluator.
    fn precise(&self) -> bool {
        self.report.finished_precisely
    }

    /// Stop for `reason`, or, while a precise evaluator can take the entity, ask for it.
    fn stop(&mut self, reason: StopReason) {
        if self.can_finish {
            self.can_finish = false;
            self.wants_finish = true;
        } else {
            self.finish(reason);
        }
    }

    /// Go on from the precise evaluator's loss and gradient at `x`, the memory kept.
    fn take_precise(&mut self, f: f64, g: &[f64], options: &LbfgsOptions, precision: f64) {
        self.f = f;
        self.g.copy_from_slice(g);
        self.precision = precision;
        self.wants_finish = false;
        self.steps_within_noise = 0;
        self.report.evaluations += 1;
        self.report.finished_precisely = true;
        self.steps_since_hand_over = 0;
        self.go_on(options);
    }

    fn finish(&mut self, reason: StopReason) {
        self.report.reason = reason;
        self.report.final_loss = self.f;
        self.report.gradient_norm = inf_norm(self.g);
        self.done = true;
    }

    /// The step of the trial point the line search is waiting for.
    fn pending_step(&self) -> f64 {
        self.search.pending()
    }

    /// Compute the next direction from the memory (steepest descent if empty or not a
    /// descent direction) and start its line search.
    fn begin_search(&mut self, options: &LbfgsOptions) {
        self.memory.direction(self.g, self.p, self.alpha);
        let mut slope = dot(self.g, self.p);
        self.steepest = self.memory.is_empty();
        // Not a descent direction (or NaN): fall back to steepest descent.
        if slope.is_nan() || slope >= 0.0 {
            self.memory.clear();
            self.steepest = true;
            for (pj, gj) in self.p.iter_mut().zip(self.g.iter()) {
                *pj = -gj;
            }
            slope = dot(self.g, self.p);
        }
        // scipy's first step: 1/‖p‖₂ on steepest descent, 1 on a quasi-Newton direction.
        let first = if self.steepest {
            (1.0 / dot(self.p, self.p).sqrt()).min(1.0)
        } else {
            1.0
        };
        let noise = 10.0 * self.precision * self.f.abs().max(1.0);
        self.search = LineSearch::new(self.f, slope, noise, first, options.max_line_search);
    }

    /// Take the evaluation of the pending trial point.
    fn observe(&mut self, f: f64, g: &[f64], options: &LbfgsOptions) {
        self.report.evaluations += 1;
        let alpha = self.search.pending();
        let point = LinePoint {
            alpha,
            value: f,
            slope: if f.is_finite() {
                dot(g, self.p)
            } else {
                f64::NAN
            },
        };
        let previous_lo = self.search.best().alpha;
        let decision = self.search.observe(point);
        if self.search.best().alpha != previous_lo && self.search.best().alpha == alpha {
            self.g_lo.copy_from_slice(g);
        }
        match decision {
            LineDecision::Try(_) => {}
            LineDecision::Accept(p) => {
                if p.alpha != alpha {
                    // An earlier point of the search: its gradient was kept in g_lo.
                    let g_lo = std::mem::take(&mut self.g_lo);
                    self.accept(p, g_lo, options);
                    self.g_lo = g_lo;
                } else {
                    self.accept(p, g, options);
                }
            }
            LineDecision::Fail => {
                if !self.steepest {
                    // Drop the memory and retry along steepest descent (as L-BFGS-B does).
                    self.memory.clear();
                    self.begin_search(options);
                } else if self.report.iterations == 0 {
                    self.stop(StopReason::LineSearchFailedKeptPrior);
                } else {
                    self.stop(StopReason::LineSearchFailed);
                }
            }
        }
    }

    fn accept(&mut self, p: LinePoint, g_new: &[f64], options: &LbfgsOptions) {
        let pairs = self.s.iter_mut().zip(self.y.iter_mut());
        let state = self
            .x
            .iter_mut()
            .zip(self.p.iter().zip(self.g.iter().zip(g_new)));
        for ((s, y), (x, (pj, (g_old, g)))) in pairs.zip(state) {
            *s = p.alpha * pj;
            *y = g - g_old;
            *x += *s;
        }
        self.memory.push(self.s, self.y);
        let f_old = self.f;
        self.f = p.value;
        self.g.copy_from_slice(g_new);
        self.report.iterations += 1;

        let rel = (f_old - self.f) / f_old.abs().max(self.f.abs()).max(1.0);
        // The first step after a hand-over follows pairs whose gradient changes were
        // partly the coarse evaluator's rounding: its small reduction says nothing of
        // convergence.
        self.steps_since_hand_over += 1;
        let fresh = self.report.finished_precisely && self.steps_since_hand_over < FRESH_PAIRS;
        // The relative loss change the evaluator can resolve (the line search's noise).
        let resolution = 10.0 * self.precision;
        let reduction_stop = if fresh {
            false
        } else if options.factr * f64::EPSILON >= resolution {
            // scipy's test, when the evaluator resolves the reduction asked for.
            rel <= options.factr * f64::EPSILON
        } else {
            // A less precise evaluator (f32): a change within its noise says nothing about
            // convergence, so stop only after several such steps in a row.
            self.steps_within_noise = if rel.abs() <= resolution {
                self.steps_within_noise + 1
            } else {
                0
            };
            self.steps_within_noise >= STEPS_WITHIN_NOISE
        };
        if inf_norm(self.g) <= options.pgtol {
            self.stop(StopReason::GradientTolerance);
        } else if reduction_stop {
            self.stop(StopReason::RelativeReduction);
        } else if self.report.iterations >= options.max_iterations {
            self.finish(StopReason::MaxIterations);
        } else {
            self.begin_search(options);
        }
    }
}
