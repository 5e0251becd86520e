//! The lockstep batched L-BFGS against argmin's L-BFGS (More–Thuente line search), run one
//! entity at a time on the same random problems: the same optimum within 1e-6 relative.

mod common;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use common::random_batch;
use glmix::eval::CpuEvaluator;
use glmix::objective::{EntityProblem, ObjectiveKind, PrecisionShape};
use glmix::solver::{minimize, LbfgsOptions};
use ndarray::Array1;

struct Entity<'a>(EntityProblem<'a>);

impl CostFunction for Entity<'_> {
    type Param = Array1<f64>;
    type Output = f64;
    fn cost(&self, x: &Array1<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.0.value(x.as_slice().unwrap()))
    }
}

impl Gradient for Entity<'_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;
    fn gradient(&self, x: &Array1<f64>) -> Result<Array1<f64>, argmin::core::Error> {
        let mut g = vec![0.0; x.len()];
        self.0.value_and_gradient(x.as_slice().unwrap(), &mut g);
        Ok(Array1::from(g))
    }
}

fn argmin_optimum(p: EntityProblem, start: &[f64]) -> Vec<f64> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-11)
        .unwrap()
        .with_tolerance_cost(0.0)
        .unwrap();
    let res = Executor::new(Entity(p), solver)
        .configure(|s| s.param(Array1::from(start.to_vec())).max_iters(2000))
        .run()
        .unwrap();
    res.state().get_best_param().unwrap().to_vec()
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
