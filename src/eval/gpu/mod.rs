//! The wgpu evaluator: the data terms of the objectives on the GPU in f32, the prior terms
//! and the solver on the CPU in f64.
//!
//! Words: a *part* is the batch of entities one thread trains at a time; a *task* is a
//! range of the rows of one entity (all of them, unless it has very many), summed by one
//! workgroup.
//!
//! Each part is packed into a dense entity-major layout ([`layout`]): an entity's rows are
//! f32 vec4s over its own features, the intercept implicit. One evaluation is one dispatch
//! of `entity_value_gradient` over the tasks of the running entities only, which computes
//! each row's margin `m_i = o_i + θ₀ + x_i·θ`, `ℓ(m_i)` and `ℓ'(m_i)`, and sums `ℓ`, `ℓ'`
//! and `ℓ' x_i` in one pass over the rows, every byte of the data read once. The host adds
//! the tasks of an entity and `½ Σ p θ² + ½ (θ−θ₀)ᵀQ(θ−θ₀)` and its gradient in f64, exactly
//! as [`EntityProblem::value_and_gradient`] does. For the posterior,
//! `entity_hessian_diagonal` sums `ℓ''` and `ℓ'' x²` on the same layout, and
//! `hessian_full` forms the d×d blocks from the `ℓ''` of each row.
//!
//! The device and the pipelines are built once in a [`GpuContext`]; each thread keeps a
//! [`GpuWorkspace`] whose buffers and bind group serve part after part; a
//! [`GpuEvaluator`] is one part in a workspace. Uploads go through persistent staging
//! (`staging.rs`); one poller thread makes every device poll (`poller.rs`) while workers
//! wait parked. Device errors are caught by error scopes (and an uncaptured-error
//! handler) and returned as [`EvalError`]s.
//!
//! [`EntityProblem::value_and_gradient`]: crate::objective::EntityProblem::value_and_gradient
//! [`EvalError`]: crate::eval::EvalError

mod context;
mod evaluator;
pub mod layout;
mod lbfgs;
mod poller;
mod probe;
mod readback;
mod row_dots;
mod staging;
mod timer;
mod timings;
mod workspace;

pub use context::{kernel_source, GpuContext, KERNELS, MAX_GPU_FEATURES, WIDE_COLS_PER_LANE};
pub use evaluator::GpuEvaluator;
pub use layout::{GpuEntity, GpuTask};
pub use lbfgs::{DeviceSolve, MAX_DEVICE_MEMORY};
pub use probe::{KernelProbe, ProbeOptions, ProbeReport};
pub use timings::{GpuTimings, Stage};
pub use workspace::GpuWorkspace;

/// Why no GPU evaluator could be made.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("the GPU adapter {adapter} refused a device: {message}")]
    Device { adapter: String, message: String },
    #[error("the GPU rejected a shader or pipeline: {0}")]
    Validation(String),
    #[error("the GPU upload failed: {0}")]
    Upload(String),
    #[error("the batch needs a {needed}-byte buffer; this GPU binds at most {limit} bytes")]
    TooLarge { needed: u64, limit: u64 },
    #[error("an entity has {features} features; the GPU kernels take at most {limit}")]
    TooWide { features: usize, limit: usize },
}
