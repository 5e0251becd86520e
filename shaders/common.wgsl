// Shared by the kernels: prepended to each `shaders/*.wgsl` file when its pipeline is built
// (WGSL has no includes), and in the naga validation test.

// Sizes of the batch (arrays are padded to at least one element, so their lengths are not used).
struct Counts {
    rows: u32,
    coefficients: u32,
    entities: u32,
    gradient_chunks: u32,
    loss_chunks: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// A range `start..end` of CSC entries (of one coefficient) or of rows, all of `entity`,
// summed by one invocation of the first reduction pass.
struct Chunk {
    start: u32,
    end: u32,
    entity: u32,
    _pad: u32,
}

// Number of outputs of a dispatch that is not sized by `Counts`.
struct Outputs {
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
