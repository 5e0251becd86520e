//! glmix trains the random effects of GLMix / GAME models — one small linear or logistic
//! regression per entity (user, item, ad) on top of a fixed-effect model whose score is
//! each record's offset — and keeps them fresh with sequential-Bayesian updates
//! (Lambda Learner): the previous model's mean and precision are the prior of the next fit.
//!
//! Map of the crate, dependencies pointing one way (`train → solver → eval`):
//! - [`objective`]: the maths in f64, the reference every evaluator is checked against;
//! - [`eval`]: the [`eval::BatchEvaluator`] trait and its CPU implementation;
//! - [`solver`]: the lockstep batched L-BFGS;
//! - [`data`], [`model`]: records, model files, priors;
//! - [`train`]: `fit(prior, data)`; [`score`], [`metrics`]; [`synth`]: seeded workloads;
//! - [`bandit`]: ranking candidates by a policy over the posteriors.

pub mod bandit;
pub mod data;
pub mod error;
pub mod eval;
pub mod game;
pub mod io;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod plot;
pub mod score;
pub mod solver;
pub mod store;
pub mod stream;
pub mod synth;
pub mod train;
pub mod vector;

pub use error::{Error, Result};
