// Register-tiled matrix product. A workgroup of WG_X x WG_Y invocations computes a
// BM x BN block of the output (BM = 4 * TM4 * WG_Y, BN = 4 * TN4 * WG_X); each
// invocation holds a (4 * TM4) x (4 * TN4) block of accumulators in registers, as
// vec4 rows, and per step of k reads TM4 + TN4 vec4s from workgroup memory for
// 16 * TM4 * TN4 multiply-adds. Tiles of A (stored transposed, [k][m]) and B
// ([k][n]) are staged in workgroup memory BK values of k at a time, loaded as vec4
// where the layout allows (see load_a4 / load_b4, generated).
//
//   Y[b, m, n] = epilogue(sum_k A[b, m, k] * B[b, k, n], m, n)
//
// A dispatch computes one part of the product, read from the uniform P: batches
// b0..b0+nb, rows m0..m1, columns n0..n1, summed over k0..k1, on a grid of
// grid_x x grid_y workgroups over tiles_m x tiles_n blocks per batch. Each
// binding may be a window of its tensor starting at element *_base (a tensor over
// the storage binding limit); a part after the first along k adds to the output.
//
// Placeholders: T element type; sizes M N K BATCH; strides
// A_SM A_SK B_SK B_SN; tiling WG_X WG_Y TM4 TN4
// BK; generated code BINDINGS PARAMS BATCH_OFFSETS LOADS EPILOGUE SCALED
// ACC_DECL INNER STORE.

const M: u32 = {{M}}u;
const N: u32 = {{N}}u;
const K: u32 = {{K}}u;
const BATCH: u32 = {{BATCH}}u;
const A_SM: u32 = {{A_SM}}u;
const A_SK: u32 = {{A_SK}}u;
const B_SK: u32 = {{B_SK}}u;
const B_SN: u32 = {{B_SN}}u;
const WG_X: u32 = {{WG_X}}u;
const WG_Y: u32 = {{WG_Y}}u;
const TM4: u32 = {{TM4}}u;
const TN4: u32 = {{TN4}}u;
const BK: u32 = {{BK}}u;
const BM4: u32 = TM4 * WG_Y;
const BN4: u32 = TN4 * WG_X;
const WG: u32 = WG_X * WG_Y;

{{BINDINGS}}
{{PARAMS}}

var<workgroup> tile_a: array<array<vec4<{{T}}>, BM4>, BK>;
var<workgroup> tile_b: array<array<vec4<{{T}}>, BN4>, BK>;

// Element offsets of the A and B matrices of output batch `bi`.
fn batch_offsets(bi: u32) -> vec2<u32> {
{{BATCH_OFFSETS}}
}

{{LOADS}}

fn epilogue(acc: {{T}}, m: u32, n: u32) -> {{T}} {
    return {{EPILOGUE}};
}

// Stores the four outputs (m, n0..n0+4) that lie inside the part.
fn store4(base: u32, m: u32, n0: u32, v: vec4<{{T}}>) {
    if (m >= P.m1) {
        return;
    }
    for (var d = 0u; d < 4u; d = d + 1u) {
        let n = n0 + d;
        if (n < P.n1) {
            let i = base + m * N + n;
            if (P.accumulate != 0u) {
                let acc = v[d];
                y[i] = y[i] + {{SCALED}};
            } else {
                y[i] = epilogue(v[d], m, n);
            }
        }
    }
}

@compute @workgroup_size({{WG_X}}, {{WG_Y}}, 1)
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
    // Offsets within the bound windows (u32 arithmetic wraps, so a window that
    // starts past the matrix's first element still indexes correctly).
    let offs = batch_offsets(bi) - vec2<u32>(P.a_base, P.b_base);
    let row0 = P.m0 + tm * BM4 * 4u;
    let col0 = P.n0 + tn * BN4 * 4u;
    let li = lid.y * WG_X + lid.x;
{{ACC_DECL}}
    for (var k0 = P.k0; k0 < P.k1; k0 = k0 + BK) {
        for (var i = li; i < BM4 * BK; i = i + WG) {
            let r = i / (BK / 4u);
            let kq = (i % (BK / 4u)) * 4u;
            let v = load_a4(offs.x, row0 + r, k0 + kq);
            tile_a[kq][r / 4u][r % 4u] = v.x;
            tile_a[kq + 1u][r / 4u][r % 4u] = v.y;
            tile_a[kq + 2u][r / 4u][r % 4u] = v.z;
            tile_a[kq + 3u][r / 4u][r % 4u] = v.w;
        }
        for (var i = li; i < BK * BN4; i = i + WG) {
            let kk = i / BN4;
            let nq = i % BN4;
            tile_b[kk][nq] = load_b4(offs.y, k0 + kk, col0 + nq * 4u);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
{{INNER}}
        }
        workgroupBarrier();
    }
    let ybase = bi * M * N - P.y_base;
{{STORE}}
}
