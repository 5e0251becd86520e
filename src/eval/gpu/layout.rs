//! The packed GPU layout of a [`TrainingBatch`]: plain `#[repr(C)]` arrays for the kernels
//! in `shaders/`, kept apart from the domain types.
//!
//! | buffer        | element       | length   | meaning                                          |
//! |---------------|---------------|----------|--------------------------------------------------|
//! | `rows`        | [`GpuRow`]    | R        | label, weight, offset (f32) and entity (u32)     |
//! | `nz_ptr`      | u32           | R + 1    | CSR row pointers into `cols`/`vals`              |
//! | `cols`,`vals` | u32, f32      | nnz      | entity-local column and value, intercept included |
//! | `coef_ptr`    | u32           | E + 1    | first coefficient of each entity                 |
//! | `csc_ptr`     | u32           | C + 1    | entries of each coefficient                      |
//! | `csc_rows`,`csc_vals` | u32, f32 | nnz   | batch row and value of each entry (CSC copy)     |
//! | `coef_entity` | u32           | C        | entity of each coefficient                       |
//! | `entity_ids`  | u32           | E        | 0, 1, …, E−1 (the owner of each entity output)   |
//! | `block_ptr`   | u32           | E + 1    | first entry of each entity's d×d Hessian block   |
//! | `counts`      | [`GpuCounts`] | 1        | R, C, E and the numbers of chunks                |
//! | `grad_chunks` | [`GpuChunk`]  | ≥ C      | ≤ 256 CSC entries of one coefficient             |
//! | `grad_part_ptr` | u32         | C + 1    | chunks of each coefficient                       |
//! | `loss_chunks` | [`GpuChunk`]  | ≥ E      | ≤ 256 rows of one entity                         |
//! | `loss_part_ptr` | u32         | E + 1    | chunks of each entity                            |
//!
//! Per evaluation the host writes `running` (u32 per entity, 1 when evaluated) and `theta`
//! (f32 per coefficient) and reads back `loss` (f32 per entity) and `grad` (f32 per
//! coefficient). Arrays that could be empty are padded to one element (bindings may not be
//! empty); the kernels take sizes from `counts`, never from array lengths.

use crate::objective::TrainingBatch;
use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuRow {
    pub label: f32,
    pub weight: f32,
    pub offset: f32,
    pub entity: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuCounts {
    pub rows: u32,
    pub coefficients: u32,
    pub entities: u32,
    pub gradient_chunks: u32,
    pub loss_chunks: u32,
    pub _pad: [u32; 3],
}

/// A range `start..end` of CSC entries or rows, all of one coefficient or entity of
/// `entity`, summed by one invocation of the first reduction pass.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuChunk {
    pub start: u32,
    pub end: u32,
    pub entity: u32,
    pub _pad: u32,
}

/// Entries per chunk: a huge entity is spread over many invocations, and a second pass
/// adds its chunks.
pub const CHUNK: usize = 256;

/// Cut each range `ptr[o]..ptr[o+1]` (owned by `entity_of(o)`) into chunks of at most
/// [`CHUNK`], at least one per range; returns the chunks and each range's chunk pointers.
fn chunks(ptr: &[u32], entity_of: impl Fn(usize) -> u32) -> (Vec<GpuChunk>, Vec<u32>) {
    let mut out = Vec::with_capacity(ptr.len());
    let mut part_ptr = Vec::with_capacity(ptr.len());
    part_ptr.push(0);
    for o in 0..ptr.len() - 1 {
        let (start, end) = (ptr[o] as usize, ptr[o + 1] as usize);
        let mut s = start;
        loop {
            let e = (s + CHUNK).min(end);
            out.push(GpuChunk {
                start: u32_of(s),
                end: u32_of(e),
                entity: entity_of(o),
                _pad: 0,
            });
            s = e;
            if s >= end {
                break;
            }
        }
        part_ptr.push(u32_of(out.len()));
    }
    (out, part_ptr)
}

/// Host copies of the static buffers of one batch.
pub struct PackedBatch {
    pub rows: Vec<GpuRow>,
    pub nz_ptr: Vec<u32>,
    pub cols: Vec<u32>,
    pub vals: Vec<f32>,
    pub coef_ptr: Vec<u32>,
    pub csc_ptr: Vec<u32>,
    pub csc_rows: Vec<u32>,
    pub csc_vals: Vec<f32>,
    pub coef_entity: Vec<u32>,
    pub entity_ids: Vec<u32>,
    /// First entry of each entity's d×d block of the full Hessian (E + 1).
    pub block_ptr: Vec<u32>,
    pub grad_chunks: Vec<GpuChunk>,
    pub grad_part_ptr: Vec<u32>,
    pub loss_chunks: Vec<GpuChunk>,
    pub loss_part_ptr: Vec<u32>,
    pub counts: GpuCounts,
}

fn u32_of(v: usize) -> u32 {
    u32::try_from(v).expect("batch cut to fit u32 indices")
}

/// Pad an empty array with one zero element.
pub fn non_empty<T: Pod>(mut v: Vec<T>) -> Vec<T> {
    if v.is_empty() {
        v.push(T::zeroed());
    }
    v
}

impl PackedBatch {
    /// Bytes one evaluation of the whole batch reads and writes: per row its record, row
    /// pointer, loss and derivative; per non-zero its column, value and θ gather in the CSR
    /// pass and its row, value and ℓ' gather in the CSC pass; the chunk tables, partial
    /// sums, and per coefficient θ and the gradient.
    pub fn bytes_per_dispatch(&self) -> f64 {
        let c = &self.counts;
        let nnz = self.cols.len() as f64;
        let chunk_bytes = 16.0 + 4.0 + 4.0; // chunk, partial written, partial read
        f64::from(c.rows) * (16.0 + 4.0 + 4.0 + 4.0)
            + nnz * 12.0 * 2.0
            + f64::from(c.gradient_chunks + c.loss_chunks) * chunk_bytes
            + f64::from(c.coefficients) * (4.0 + 4.0 + 4.0 + 4.0)
            + f64::from(c.entities) * (4.0 + 4.0 + 4.0)
    }

    /// Packing runs in parallel over entities: each entity's CSC entries form one
    /// contiguous region, filled by a counting sort of its own rows. The batch's implicit
    /// intercept becomes an explicit column 0 of value 1 first in every row, so that the
    /// kernels treat it as any other column.
    pub fn new(batch: &TrainingBatch) -> Self {
        let (n_rows, n_coefs, n_entities) = (
            batch.num_rows(),
            batch.num_coefficients(),
            batch.num_entities(),
        );
        let base = batch.nz_ptr[0];
        // The batch's features, then one intercept per row.
        let nnz = batch.nz_ptr[n_rows] - base + n_rows;
        let features = |i: usize| {
            let r = batch.nz_ptr[i]..batch.nz_ptr[i + 1];
            (&batch.cols[r.clone()], &batch.vals[r])
        };
        let coefs = |e: usize| batch.coef_ptr[e]..batch.coef_ptr[e + 1];
        let entity_rows = |e: usize| batch.row_ptr[e]..batch.row_ptr[e + 1];
        let rows: Vec<GpuRow> = (0..n_entities)
            .into_par_iter()
            .flat_map_iter(|e| {
                entity_rows(e).map(move |i| GpuRow {
                    label: batch.labels[i] as f32,
                    weight: batch.weights[i] as f32,
                    offset: batch.offsets[i] as f32,
                    entity: u32_of(e),
                })
            })
            .collect();
        let coef_entity: Vec<u32> = (0..n_entities)
            .into_par_iter()
            .flat_map_iter(|e| std::iter::repeat_n(u32_of(e), coefs(e).len()))
            .collect();
        // Entries per coefficient, then CSC pointers.
        let counts: Vec<Vec<u32>> = (0..n_entities)
            .into_par_iter()
            .map(|e| {
                let mut count = vec![0u32; coefs(e).len()];
                count[0] = u32_of(entity_rows(e).len());
                for i in entity_rows(e) {
                    for &c in features(i).0 {
                        count[c as usize] += 1;
                    }
                }
                count
            })
            .collect();
        let mut csc_ptr = Vec::with_capacity(n_coefs + 1);
        csc_ptr.push(0u32);
        for &n in counts.iter().flatten() {
            csc_ptr.push(csc_ptr.last().expect("starts with 0") + n);
        }
        // Each entity's region of the CSC arrays, filled in parallel.
        let (mut csc_rows, mut csc_vals) = (vec![0u32; nnz], vec![0f32; nnz]);
        let mut regions = Vec::with_capacity(n_entities);
        let (mut rest_rows, mut rest_vals) = (csc_rows.as_mut_slice(), csc_vals.as_mut_slice());
        for e in 0..n_entities {
            let len = (csc_ptr[batch.coef_ptr[e + 1]] - csc_ptr[batch.coef_ptr[e]]) as usize;
            let (r, tail_rows) = std::mem::take(&mut rest_rows).split_at_mut(len);
            let (v, tail_vals) = std::mem::take(&mut rest_vals).split_at_mut(len);
            regions.push((e, r, v));
            (rest_rows, rest_vals) = (tail_rows, tail_vals);
        }
        regions
            .into_par_iter()
            .for_each(|(e, region_rows, region_vals)| {
                let c0 = batch.coef_ptr[e];
                let start = csc_ptr[c0];
                let mut fill: Vec<u32> = coefs(e).map(|c| csc_ptr[c] - start).collect();
                for i in entity_rows(e) {
                    let (cols, vals) = features(i);
                    let intercept = std::iter::once((&0, &1.0));
                    for (&c, &v) in intercept.chain(cols.iter().zip(vals)) {
                        let slot = &mut fill[c as usize];
                        region_rows[*slot as usize] = u32_of(i);
                        region_vals[*slot as usize] = v as f32;
                        *slot += 1;
                    }
                }
            });
        let row_ptr: Vec<u32> = batch.row_ptr.iter().map(|&p| u32_of(p)).collect();
        let (grad_chunks, grad_part_ptr) = chunks(&csc_ptr, |j| coef_entity[j]);
        let (loss_chunks, loss_part_ptr) = chunks(&row_ptr, u32_of);
        PackedBatch {
            rows,
            nz_ptr: (0..=n_rows)
                .into_par_iter()
                .map(|i| u32_of(batch.nz_ptr[i] - base + i))
                .collect(),
            cols: (0..n_rows)
                .into_par_iter()
                .flat_map_iter(|i| std::iter::once(0).chain(features(i).0.iter().copied()))
                .collect(),
            vals: (0..n_rows)
                .into_par_iter()
                .flat_map_iter(|i| {
                    let values = features(i).1.iter().map(|&v| v as f32);
                    std::iter::once(1.0).chain(values)
                })
                .collect(),
            coef_ptr: batch.coef_ptr.iter().map(|&p| u32_of(p)).collect(),
            csc_ptr,
            csc_rows,
            csc_vals,
            coef_entity,
            entity_ids: (0..u32_of(n_entities)).collect(),
            block_ptr: std::iter::once(0)
                .chain((0..n_entities).scan(0usize, |total, e| {
                    *total += coefs(e).len() * coefs(e).len();
                    Some(u32_of(*total))
                }))
                .collect(),
            counts: GpuCounts {
                rows: u32_of(n_rows),
                coefficients: u32_of(n_coefs),
                entities: u32_of(n_entities),
                gradient_chunks: u32_of(grad_chunks.len()),
                loss_chunks: u32_of(loss_chunks.len()),
                _pad: [0; 3],
            },
            grad_chunks,
            grad_part_ptr,
            loss_chunks,
            loss_part_ptr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Loss, PrecisionShape};

    #[test]
    fn csc_holds_every_csr_entry_once() {
        let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        b.push_row(1.0, 1.0, 0.0, [1], &[2.0]);
        b.push_row(-1.0, 1.0, 0.0, [2], &[3.0]);
        b.finish_entity(&[1.0; 3], &[0.0; 3], &[]);
        b.push_row(1.0, 0.5, 0.25, [1], &[-1.0]);
        b.finish_entity(&[1.0; 2], &[0.0; 2], &[]);
        let p = PackedBatch::new(&b.build());
        // The intercept is explicit on the GPU: column 0, value 1, first in every row.
        assert_eq!(p.nz_ptr, vec![0, 2, 4, 6]);
        assert_eq!(p.cols, vec![0, 1, 0, 2, 0, 1]);
        assert_eq!(p.vals, vec![1.0, 2.0, 1.0, 3.0, 1.0, -1.0]);
        // Coefficients: e0 (intercept, 1, 2), e1 (intercept, 1).
        assert_eq!(p.csc_ptr, vec![0, 2, 3, 4, 5, 6]);
        assert_eq!(p.csc_rows, vec![0, 1, 0, 1, 2, 2]);
        assert_eq!(p.csc_vals, vec![1.0, 1.0, 2.0, 3.0, 1.0, -1.0]);
        assert_eq!(p.coef_entity, vec![0, 0, 0, 1, 1]);
        assert_eq!(
            p.rows[2],
            GpuRow {
                label: 1.0,
                weight: 0.5,
                offset: 0.25,
                entity: 1
            }
        );
    }

    #[test]
    fn long_ranges_are_cut_into_chunks_and_empty_ones_keep_one() {
        let (c, ptr) = chunks(&[0, 0, 600, 601], |o| o as u32);
        let ranges: Vec<(u32, u32, u32)> = c.iter().map(|c| (c.start, c.end, c.entity)).collect();
        assert_eq!(
            ranges,
            vec![
                (0, 0, 0),
                (0, 256, 1),
                (256, 512, 1),
                (512, 600, 1),
                (600, 601, 2)
            ]
        );
        assert_eq!(ptr, vec![0, 1, 4, 5]);
    }
}
