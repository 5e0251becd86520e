//! Where a GPU evaluator's time went, and the counts that say what it asked of the device.
//! Seconds are host thread-seconds except `device_kernels`; on a software adapter only
//! the counts mean anything.

/// The kernels of a submission, for the device seconds of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    ValueGradient,
    HessianDiagonal,
    /// `ℓ''` per row and then the d×d blocks (two submissions).
    HessianFull,
    /// A round of the device L-BFGS: the loss and gradient, then the step.
    DeviceRound,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::ValueGradient,
        Stage::HessianDiagonal,
        Stage::HessianFull,
        Stage::DeviceRound,
    ];

    /// The kernel's name, as its shader file has it.
    pub fn kernel(self) -> &'static str {
        match self {
            Stage::ValueGradient => "entity_value_gradient",
            Stage::HessianDiagonal => "entity_hessian_diagonal",
            Stage::HessianFull => "hessian_full",
            Stage::DeviceRound => "entity_value_gradient+lbfgs_step",
        }
    }
}

/// Seconds by phase and counts of device work, summed over evaluations and parts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTimings {
    /// Packing each part into the dense layout and uploading it.
    pub setup: f64,
    /// The packing alone (on the host).
    pub pack: f64,
    /// Listing the tasks and θ of an evaluation, writing them, encoding and submitting.
    pub upload: f64,
    /// From submission until the results could be read, on the host.
    pub kernels: f64,
    /// The kernels alone, timed on the device by timestamp queries (0 where the adapter
    /// has none).
    pub device_kernels: f64,
    /// `device_kernels` by [`Stage`], indexed by `Stage as usize`.
    pub device_stages: [f64; 4],
    /// Mapping and copying out the results, and adding the tasks' sums per entity.
    pub readback: f64,
    /// Evaluations dispatched (loss and gradient, or a Hessian).
    pub dispatches: usize,
    /// Bytes the kernels name: each dispatched entity's data, tasks, θ and outputs.
    pub kernel_bytes: f64,
    /// Entity-evaluations asked for (the running entities of each evaluation).
    pub entity_evaluations: usize,
    /// Entities that had tasks in a dispatch (1 per running entity when the task list
    /// holds only the running ones).
    pub entity_slots: usize,
    /// Device buffers created, and their bytes.
    pub buffers_created: usize,
    pub buffer_bytes_created: u64,
    /// Buffers created while a thread's second or later part was set up (its buffers
    /// are created at its first and grown only when a later part is larger).
    pub buffers_created_after_first_part: usize,
    /// Fills of the persistent upload staging (one per part and one per evaluation), and
    /// the bytes they carried to the device.
    pub staged_fills: usize,
    pub bytes_up: u64,
    /// Bytes read back from the device.
    pub bytes_down: u64,
    /// Queue submissions of evaluations (one each), and of parts' uploads (one each).
    pub submissions: usize,
    pub part_submissions: usize,
    /// Waits of a worker for its submission, parked until the poller thread has seen it
    /// run (a worker never polls the device).
    pub parked_waits: usize,
}

impl GpuTimings {
    pub fn add(&mut self, other: &GpuTimings) {
        self.setup += other.setup;
        self.pack += other.pack;
        self.upload += other.upload;
        self.kernels += other.kernels;
        self.device_kernels += other.device_kernels;
        for (s, o) in self.device_stages.iter_mut().zip(other.device_stages) {
            *s += o;
        }
        self.readback += other.readback;
        self.dispatches += other.dispatches;
        self.kernel_bytes += other.kernel_bytes;
        self.entity_evaluations += other.entity_evaluations;
        self.entity_slots += other.entity_slots;
        self.buffers_created += other.buffers_created;
        self.buffer_bytes_created += other.buffer_bytes_created;
        self.buffers_created_after_first_part += other.buffers_created_after_first_part;
        self.staged_fills += other.staged_fills;
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
        self.submissions += other.submissions;
        self.part_submissions += other.part_submissions;
        self.parked_waits += other.parked_waits;
    }

    /// The counts and seconds accrued since `earlier`, a copy of the same totals.
    pub fn since(&self, earlier: &GpuTimings) -> GpuTimings {
        GpuTimings {
            setup: self.setup - earlier.setup,
            pack: self.pack - earlier.pack,
            upload: self.upload - earlier.upload,
            kernels: self.kernels - earlier.kernels,
            device_kernels: self.device_kernels - earlier.device_kernels,
            device_stages: std::array::from_fn(|k| {
                self.device_stages[k] - earlier.device_stages[k]
            }),
            readback: self.readback - earlier.readback,
            dispatches: self.dispatches - earlier.dispatches,
            kernel_bytes: self.kernel_bytes - earlier.kernel_bytes,
            entity_evaluations: self.entity_evaluations - earlier.entity_evaluations,
            entity_slots: self.entity_slots - earlier.entity_slots,
            buffers_created: self.buffers_created - earlier.buffers_created,
            buffer_bytes_created: self.buffer_bytes_created - earlier.buffer_bytes_created,
            buffers_created_after_first_part: self.buffers_created_after_first_part
                - earlier.buffers_created_after_first_part,
            staged_fills: self.staged_fills - earlier.staged_fills,
            bytes_up: self.bytes_up - earlier.bytes_up,
            bytes_down: self.bytes_down - earlier.bytes_down,
            submissions: self.submissions - earlier.submissions,
            part_submissions: self.part_submissions - earlier.part_submissions,
            parked_waits: self.parked_waits - earlier.parked_waits,
        }
    }

    /// Bytes named per active entity-evaluation of the loss and gradient.
    pub fn bytes_per_entity_evaluation(&self) -> f64 {
        self.kernel_bytes / self.entity_evaluations.max(1) as f64
    }

    /// Entity slots dispatched per active entity-evaluation (1 when finished entities
    /// cost nothing).
    pub fn slot_to_active_ratio(&self) -> f64 {
        self.entity_slots as f64 / self.entity_evaluations.max(1) as f64
    }
}
