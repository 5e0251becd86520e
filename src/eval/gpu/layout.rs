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

/// `buf` cut into `n` consecutive pieces, piece `k` of length `len(k)`.
fn split_by<T>(mut buf: &mut [T], n: usize, len: impl Fn(usize) -> usize) -> Vec<&mut [T]> {
    let mut pieces = Vec::with_capacity(n);
    for k in 0..n {
        let (piece, rest) = std::mem::take(&mut buf).split_at_mut(len(k));
        pieces.push(piece);
        buf = rest;
    }
    pieces
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

    /// Packing runs in parallel over entities: every array is allocated once at its final
    /// size and each entity fills its own region of it (its rows, its non-zeros, its CSC
    /// entries, the last by a counting sort of its own rows). The batch's implicit
    /// intercept becomes an explicit column 0 of value 1 first in every row, so that the
    /// kernels treat it as any other column.
    pub fn new(batch: &TrainingBatch) -> Self {
        let (n_rows, n_coefs, n_entities) = (
            batch.num_rows(),
            batch.num_coefficients(),
            batch.num_entities(),
        );
        let base = batch.nz_ptr[0];
        // Non-zeros on the GPU: the batch's features, then one intercept per row.
        let gpu_nz = |i: usize| batch.nz_ptr[i] - base + i;
        let nnz = gpu_nz(n_rows);
        let features = |i: usize| {
            let r = batch.nz_ptr[i]..batch.nz_ptr[i + 1];
            (&batch.cols[r.clone()], &batch.vals[r])
        };
        let coefs = |e: usize| batch.coef_ptr[e]..batch.coef_ptr[e + 1];
        let entity_rows = |e: usize| batch.row_ptr[e]..batch.row_ptr[e + 1];
        let entity_nz = |e: usize| gpu_nz(batch.row_ptr[e])..gpu_nz(batch.row_ptr[e + 1]);

        let mut rows = vec![GpuRow::zeroed(); n_rows];
        let (mut cols, mut vals) = (vec![0u32; nnz], vec![0f32; nnz]);
        // Entries per coefficient: the intercept's are the entity's rows.
        let mut count = vec![0u32; n_coefs];
        let regions = split_by(&mut rows, n_entities, |e| entity_rows(e).len())
            .into_iter()
            .zip(split_by(&mut cols, n_entities, |e| entity_nz(e).len()))
            .zip(split_by(&mut vals, n_entities, |e| entity_nz(e).len()))
            .zip(split_by(&mut count, n_entities, |e| coefs(e).len()));
        regions
            .enumerate()
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(|(e, (((rows, cols), vals), count))| {
                let mut k = 0;
                for (row, i) in rows.iter_mut().zip(entity_rows(e)) {
                    *row = GpuRow {
                        label: batch.labels[i] as f32,
                        weight: batch.weights[i] as f32,
                        offset: batch.offsets[i] as f32,
                        entity: u32_of(e),
                    };
                    let (c, v) = features(i);
                    (cols[k], vals[k]) = (0, 1.0);
                    cols[k + 1..k + 1 + c.len()].copy_from_slice(c);
                    for (out, &v) in vals[k + 1..k + 1 + v.len()].iter_mut().zip(v) {
                        *out = v as f32;
                    }
                    for &c in c {
                        count[c as usize] += 1;
                    }
                    count[0] += 1;
                    k += 1 + c.len();
                }
            });
        let mut csc_ptr = Vec::with_capacity(n_coefs + 1);
        csc_ptr.push(0u32);
        for &n in &count {
            csc_ptr.push(csc_ptr.last().expect("starts with 0") + n);
        }
        // Each entity's region of the CSC arrays, filled in parallel; `count` becomes the
        // next free slot of each coefficient within its entity's region.
        let (mut csc_rows, mut csc_vals) = (vec![0u32; nnz], vec![0f32; nnz]);
        let csc_len = |e: usize| (csc_ptr[coefs(e).end] - csc_ptr[coefs(e).start]) as usize;
        let regions = split_by(&mut csc_rows, n_entities, csc_len)
            .into_iter()
            .zip(split_by(&mut csc_vals, n_entities, csc_len))
            .zip(split_by(&mut count, n_entities, |e| coefs(e).len()));
        regions
            .enumerate()
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(|(e, ((region_rows, region_vals), fill))| {
                let start = csc_ptr[coefs(e).start];
                for (slot, c) in fill.iter_mut().zip(coefs(e)) {
                    *slot = csc_ptr[c] - start;
                }
                let (e_cols, e_vals) = (&cols[entity_nz(e)], &vals[entity_nz(e)]);
                let mut k = 0;
                for i in entity_rows(e) {
                    let width = 1 + features(i).0.len();
                    for (&c, &v) in e_cols[k..k + width].iter().zip(&e_vals[k..k + width]) {
                        let slot = &mut fill[c as usize];
                        region_rows[*slot as usize] = u32_of(i);
                        region_vals[*slot as usize] = v;
                        *slot += 1;
                    }
                    k += width;
                }
            });
        let coef_entity: Vec<u32> = (0..n_entities)
            .flat_map(|e| std::iter::repeat_n(u32_of(e), coefs(e).len()))
            .collect();
        let row_ptr: Vec<u32> = batch.row_ptr.iter().map(|&p| u32_of(p)).collect();
        let (grad_chunks, grad_part_ptr) = chunks(&csc_ptr, |j| coef_entity[j]);
        let (loss_chunks, loss_part_ptr) = chunks(&row_ptr, u32_of);
        PackedBatch {
            rows,
            nz_ptr: (0..=n_rows).map(|i| u32_of(gpu_nz(i))).collect(),
            cols,
            vals,
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
