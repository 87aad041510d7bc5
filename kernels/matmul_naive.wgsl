// Naive shared-memory tiled matrix product: a 16x16 workgroup computes a 16x16
// block of the output, one element per invocation, through 16x16 tiles of A and B
// in workgroup memory. Kept as the baseline the register-tiled kernel is measured
// against (benches/matmul_gpu.rs) and as a reference in the tests.
//
//   Y[b, m, n] = ALPHA * sum_k A[b, m, k] * B[b, k, n]  (+ BETA * C[m, n])
//
// A dispatch computes the part of the product the uniform P names (see
// matmul_tiled.wgsl).
//
// Placeholders: T element type; M N K BATCH sizes; A_SM
// A_SK B_SK B_SN element strides of A and B (transposes); BINDINGS the storage
// bindings; PARAMS the part uniform; SCALED `alpha * acc`; BATCH_OFFSETS the
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
const TS: u32 = 16u;

{{BINDINGS}}
{{PARAMS}}

var<workgroup> tile_a: array<array<{{T}}, 16>, 16>;
var<workgroup> tile_b: array<array<{{T}}, 16>, 16>;

// Element offsets of the A and B matrices of output batch `bi`.
fn batch_offsets(bi: u32) -> vec2<u32> {
{{BATCH_OFFSETS}}
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = (wid.z * P.grid_y + wid.y) * P.grid_x + wid.x;
    let tn = flat % P.tiles_n;
    let rest = flat / P.tiles_n;
    let tm = rest % P.tiles_m;
    let bl = rest / P.tiles_m;
    if (bl >= P.nb) {
        return;
    }
    let bi = P.b0 + bl;
    let offs = batch_offsets(bi) - vec2<u32>(P.a_base, P.b_base);
    let m = P.m0 + tm * TS + lid.y;
    let n = P.n0 + tn * TS + lid.x;
    var acc: {{T}} = {{T}}(0);
    for (var k0 = P.k0; k0 < P.k1; k0 = k0 + TS) {
        let ka = k0 + lid.x;
        var av: {{T}} = {{T}}(0);
        if (m < P.m1 && ka < P.k1) {
            av = a[offs.x + m * A_SM + ka * A_SK];
        }
        tile_a[lid.y][lid.x] = av;
        let kb = k0 + lid.y;
        var bv: {{T}} = {{T}}(0);
        if (kb < P.k1 && n < P.n1) {
            bv = b[offs.y + kb * B_SK + n * B_SN];
        }
        tile_b[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < TS; kk = kk + 1u) {
            acc = acc + tile_a[lid.y][kk] * tile_b[kk][lid.x];
        }
        workgroupBarrier();
    }
    if (m < P.m1 && n < P.n1) {
        let i = bi * M * N + m * N + n - P.y_base;
        if (P.accumulate != 0u) {
            y[i] = y[i] + {{SCALED}};
        } else {
            y[i] = {{EPILOGUE}};
        }
    }
}
