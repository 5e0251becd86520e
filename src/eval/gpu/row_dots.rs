//! `x_i·θ` for every row `i` of a CSR matrix, on the GPU (`shaders/row_dots.wgsl`): the
//! linear part of each record's margin when scoring.
//!
//! The rows are cut into parts whose buffers fit the adapter's binding limit; each part
//! gets its own compact copy of the coefficients it touches (columns renumbered in order of
//! first use), so the parts need not be grouped by entity and `θ` itself may be larger than
//! one binding. Values and coefficients go up as f32; the sums come back as f32.

use super::readback::read_back;
use super::GpuContext;
use crate::eval::EvalError;
use wgpu::util::DeviceExt;

/// Marks a coefficient not yet used by the current part.
const UNUSED: u32 = u32::MAX;

impl GpuContext {
    /// `Σ_k vals[k] θ[cols[k]]` over `ptr[i]..ptr[i+1]` for every row `i`, in f32.
    pub fn row_dots(
        &self,
        ptr: &[usize],
        cols: &[u32],
        vals: &[f64],
        theta: &[f64],
    ) -> Result<Vec<f32>, EvalError> {
        let rows = ptr.len().saturating_sub(1);
        let max_elements = (self.max_binding_bytes() / 4) as usize;
        let mut out = Vec::with_capacity(rows);
        let mut local = vec![UNUSED; theta.len()];
        let mut start = 0;
        while start < rows {
            // The longest run of rows whose entries, and pointers, fit one binding.
            let mut end = start;
            while end < rows
                && ptr[end + 1] - ptr[start] <= max_elements
                && end + 2 - start <= max_elements
            {
                end += 1;
            }
            if end == start {
                return Err(EvalError::Backend(format!(
                    "record {start} has {} features; this GPU binds at most {max_elements} per buffer",
                    ptr[start + 1] - ptr[start]
                )));
            }
            let entries = ptr[start]..ptr[end];
            let mut part_theta = Vec::new();
            let part_cols: Vec<u32> = cols[entries.clone()]
                .iter()
                .map(|&c| {
                    let slot = &mut local[c as usize];
                    if *slot == UNUSED {
                        *slot = part_theta.len() as u32;
                        part_theta.push(theta[c as usize] as f32);
                    }
                    *slot
                })
                .collect();
            for &c in &cols[entries.clone()] {
                local[c as usize] = UNUSED;
            }
            let part_ptr: Vec<u32> = ptr[start..=end]
                .iter()
                .map(|&p| (p - ptr[start]) as u32)
                .collect();
            let part_vals: Vec<f32> = vals[entries].iter().map(|&v| v as f32).collect();
            out.extend(self.dispatch_row_dots(&part_ptr, part_cols, part_vals, part_theta)?);
            start = end;
        }
        Ok(out)
    }

    /// One part: buffers made, one dispatch, the sums read back.
    fn dispatch_row_dots(
        &self,
        ptr: &[u32],
        cols: Vec<u32>,
        vals: Vec<f32>,
        theta: Vec<f32>,
    ) -> Result<Vec<f32>, EvalError> {
        let device = &self.device;
        let rows = ptr.len() - 1;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let init = |name: &str, contents: &[u8], usage: wgpu::BufferUsages| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents,
                usage,
            })
        };
        let storage = wgpu::BufferUsages::STORAGE;
        // Bindings may not be empty: the entries of a part of featureless records are
        // padded to one (the kernel reads only as far as `ptr` says).
        let buffers = [
            init("dot_ptr", bytemuck::cast_slice(ptr), storage),
            init("dot_cols", bytemuck::cast_slice(&non_empty(cols)), storage),
            init("dot_vals", bytemuck::cast_slice(&non_empty(vals)), storage),
            init(
                "dot_theta",
                bytemuck::cast_slice(&non_empty(theta)),
                storage,
            ),
            init(
                "dots",
                bytemuck::cast_slice(&vec![0f32; rows]),
                storage | wgpu::BufferUsages::COPY_SRC,
            ),
            init(
                "dot_outputs",
                bytemuck::cast_slice(&[rows as u32, 0, 0, 0]),
                wgpu::BufferUsages::UNIFORM,
            ),
        ];
        let read = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dots_read"),
            size: (rows * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let entries: Vec<(u32, &wgpu::Buffer)> = (0..).zip(&buffers).collect();
        let bind = bind_group(device, &self.row_dots, &entries);
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.row_dots);
            pass.set_bind_group(0, &bind, &[]);
            let (x, y) = self.row_grid(rows as u32);
            pass.dispatch_workgroups(x, y, 1);
        }
        encoder.copy_buffer_to_buffer(&buffers[4], 0, &read, 0, read.size());
        let submission = self.queue.submit([encoder.finish()]);
        let dots = read_back(&self.poller, &read, read.size(), submission)?;
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(EvalError::Backend(format!("GPU validation error: {err}")));
        }
        Ok(dots)
    }
}

/// A bind group for `pipeline`'s group 0 with each buffer at its binding.
fn bind_group(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|&(binding, buffer)| wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Pad an empty array with one zero element.
fn non_empty<T: bytemuck::Pod>(mut v: Vec<T>) -> Vec<T> {
    if v.is_empty() {
        v.push(T::zeroed());
    }
    v
}
