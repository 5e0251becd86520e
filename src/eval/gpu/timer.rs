//! Device time of a submission by two timestamp queries, where the adapter has them.

use super::GpuContext;

/// Two timestamps around a submission's passes, resolved and copied out with its results.
pub(super) struct KernelTimer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    pub(super) read: wgpu::Buffer,
    /// Nanoseconds per tick.
    period: f32,
}

impl KernelTimer {
    pub(super) fn new(
        ctx: &GpuContext,
        period: f32,
        create: &mut impl FnMut(&str, u64, wgpu::BufferUsages) -> wgpu::Buffer,
    ) -> Self {
        KernelTimer {
            queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel_timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: create(
                "kernel_timer_resolved",
                16,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            read: create(
                "kernel_timer_read",
                16,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period,
        }
    }

    /// The writes of pass `k` of `passes`: the start before the first, the end after the
    /// last.
    pub(super) fn writes(
        &self,
        k: usize,
        passes: usize,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let (first, last) = (k == 0, k + 1 == passes);
        (first || last).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: first.then_some(0),
            end_of_pass_write_index: last.then_some(1),
        })
    }

    /// Queue the resolve of both timestamps and their copy to the readable buffer.
    pub(super) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.read, 0, 16);
    }

    /// Seconds between the two timestamps of `ticks`.
    pub(super) fn seconds(&self, ticks: &[u64]) -> f64 {
        ticks[1].saturating_sub(ticks[0]) as f64 * f64::from(self.period) * 1e-9
    }
}
