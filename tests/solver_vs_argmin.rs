//! The lockstep batched L-BFGS against argmin's L-BFGS (More–Thuente line search), run one
//! entity at a time on the same random problems: the same optimum within 1e-6 relative.

mod common;

use argmin::core::{CostFunction, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use common::random_batch;
use glmix::eval::CpuEvaluator;
use glmix::objective::{EntityProblem, ObjectiveKind, PrecisionShape};
use glmix::solver::{minimize, LbfgsOptions};
use ndarray::Array1;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One entity as an argmin problem. argmin 0.11's More–Thuente search has no evaluation
/// limit (MINPACK's `maxfev`) and can cycle once rounding noise dominates near the optimum,
/// so the problem counts evaluations, remembers the best point argmin has visited, and
/// ends the run with an error past a budget; the best point is then argmin's answer.
struct Entity<'a> {
    problem: EntityProblem<'a>,
    best: Rc<RefCell<(f64, Vec<f64>)>>,
    evaluations: Cell<usize>,
}

const EVALUATION_BUDGET: usize = 20_000;

impl CostFunction for Entity<'_> {
    type Param = Array1<f64>;
    type Output = f64;
    fn cost(&self, x: &Array1<f64>) -> Result<f64, argmin::core::Error> {
        self.evaluations.set(self.evaluations.get() + 1);
        if self.evaluations.get() > EVALUATION_BUDGET {
            return Err(argmin::core::Error::msg("evaluation budget spent"));
        }
        let value = self.problem.value(x.as_slice().unwrap());
        let mut best = self.best.borrow_mut();
        if value < best.0 {
            *best = (value, x.to_vec());
        }
        Ok(value)
    }
}

impl Gradient for Entity<'_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;
    fn gradient(&self, x: &Array1<f64>) -> Result<Array1<f64>, argmin::core::Error> {
        let mut g = vec![0.0; x.len()];
        self.problem
            .value_and_gradient(x.as_slice().unwrap(), &mut g);
        Ok(Array1::from(g))
    }
}

fn argmin_optimum(problem: EntityProblem, start: &[f64]) -> Vec<f64> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-10)
        .unwrap()
        .with_tolerance_cost(0.0)
        .unwrap();
    let best = Rc::new(RefCell::new((f64::INFINITY, start.to_vec())));
    let entity = Entity {
        problem,
        best: Rc::clone(&best),
        evaluations: Cell::new(0),
    };
    // Ok or the budget error: either way the best visited point is argmin's optimum.
    let _ = Executor::new(entity, solver)
        .configure(|s| s.param(Array1::from(start.to_vec())).max_iters(2000))
        .run();
    let best = best.borrow().1.clone();
    best
}

fn check(objective: ObjectiveKind, shape: PrecisionShape, seed: u64) {
    let batch = random_batch(seed, 60, 40, 8, objective, shape);
    let options = LbfgsOptions {
        pgtol: 1e-10,
        factr: 1.0,
        ..LbfgsOptions::default()
    };
    let solved = minimize(
        &mut CpuEvaluator::new(&batch),
        &batch.prior_mean,
        &options,
        |_| {},
    )
    .unwrap();
    let mut worst = 0.0f64;
    for e in 0..batch.num_entities() {
        let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
        let reference = argmin_optimum(batch.entity(e), &batch.prior_mean[r.clone()]);
        for (a, b) in solved.theta[r].iter().zip(&reference) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
        assert!(
            solved.reports[e].final_loss
                <= batch.entity(e).value(&reference)
                    + 1e-12 * solved.reports[e].final_loss.abs().max(1.0)
        );
    }
    assert!(
        worst <= 1e-6,
        "{objective} {shape:?}: worst relative difference {worst:e}"
    );
}

#[test]
fn logistic_matches_argmin() {
    check(ObjectiveKind::Logistic, PrecisionShape::None, 1);
}

#[test]
fn linear_matches_argmin() {
    check(ObjectiveKind::Linear, PrecisionShape::None, 2);
}

#[test]
fn bayes_logistic_matches_argmin() {
    check(ObjectiveKind::BayesLogistic, PrecisionShape::Diagonal, 3);
    check(ObjectiveKind::BayesLogistic, PrecisionShape::Full, 4);
}

#[test]
fn bayes_linear_matches_argmin() {
    check(ObjectiveKind::BayesLinear, PrecisionShape::Diagonal, 5);
    check(ObjectiveKind::BayesLinear, PrecisionShape::Full, 6);
}
