// Naive shared-memory tiled matrix product: a 16x16 workgroup computes a 16x16
// block of the output, one element per invocation, through 16x16 tiles of A and B
// in workgroup memory. Kept as the baseline the register-tiled kernel is measured
// against (benches/matmul_gpu.rs) and as a reference in the tests.
//
//   Y[b, m, n] = ALPHA * sum_k A[b, m, k] * B[b, k, n]  (+ BETA * C[m, n])
//
// Placeholders: T element type; M N K BATCH sizes; A_SM
// A_SK B_SK B_SN element strides of A and B (transposes); GRID_X
// TILES_N TILES_M; BINDINGS the storage bindings; BATCH_OFFSETS the
// body of batch_offsets(); EPILOGUE the value stored for accumulator `acc` at
// (m, n), e.g. `acc` or `ALPHA * acc + BETA * c[...]`.

const M: u32 = {{M}}u;
const N: u32 = {{N}}u;
const K: u32 = {{K}}u;
const BATCH: u32 = {{BATCH}}u;
const A_SM: u32 = {{A_SM}}u;
const A_SK: u32 = {{A_SK}}u;
const B_SK: u32 = {{B_SK}}u;
const B_SN: u32 = {{B_SN}}u;
const GRID_X: u32 = {{GRID_X}}u;
const GRID_Y: u32 = {{GRID_Y}}u;
const TILES_N: u32 = {{TILES_N}}u;
const TILES_M: u32 = {{TILES_M}}u;
const TS: u32 = 16u;

{{BINDINGS}}

var<workgroup> tile_a: array<array<{{T}}, 16>, 16>;
var<workgroup> tile_b: array<array<{{T}}, 16>, 16>;

// Element offsets of the A and B matrices of output batch `bi`.
fn batch_offsets(bi: u32) -> vec2<u32> {
{{BATCH_OFFSETS}}
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = (wid.z * GRID_Y + wid.y) * GRID_X + wid.x;
    let tn = flat % TILES_N;
    let rest = flat / TILES_N;
    let tm = rest % TILES_M;
    let bi = rest / TILES_M;
    if (bi >= BATCH) {
        return;
    }
    let offs = batch_offsets(bi);
    let m = tm * TS + lid.y;
    let n = tn * TS + lid.x;
    var acc: {{T}} = {{T}}(0);
    for (var k0 = 0u; k0 < K; k0 = k0 + TS) {
        let ka = k0 + lid.x;
        var av: {{T}} = {{T}}(0);
        if (m < M && ka < K) {
            av = a[offs.x + m * A_SM + ka * A_SK];
        }
        tile_a[lid.y][lid.x] = av;
        let kb = k0 + lid.y;
        var bv: {{T}} = {{T}}(0);
        if (kb < K && n < N) {
            bv = b[offs.y + kb * B_SK + n * B_SN];
        }
        tile_b[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < TS; kk = kk + 1u) {
            acc = acc + tile_a[lid.y][kk] * tile_b[kk][lid.x];
        }
        workgroupBarrier();
    }
    if (m < M && n < N) {
        y[bi * M * N + m * N + n] = {{EPILOGUE}};
    }
}
