// Sliding-window pooling (MaxPool, AveragePool) over 1-D to 3-D spatial dims,
// handled as 3-D with leading size-1 dims. One invocation per output element;
// the window loop skips taps that fall in the padding.
//
// Placeholders: T element type; TOTAL output elements; IN0 IN1
// IN2 input and OUT0 OUT1 OUT2 output spatial sizes; K0..,
// S0.., D0.., P0.. kernel, strides, dilations and begin pads; L0..
// the padded extent (begin pad + input + end pad) each dim counts for
// count_include_pad; GRID_X GRID_Y; BINDINGS; INIT declares the
// accumulators, ACCUM folds tap value `v` at input offset `off`, RESULT
// the output value, EXTRA_STORE any second output (MaxPool's Indices).

const TOTAL: u32 = {{TOTAL}}u;
const IN0: u32 = {{IN0}}u;
const IN1: u32 = {{IN1}}u;
const IN2: u32 = {{IN2}}u;
const OUT0: u32 = {{OUT0}}u;
const OUT1: u32 = {{OUT1}}u;
const OUT2: u32 = {{OUT2}}u;
const K0: u32 = {{K0}}u;
const K1: u32 = {{K1}}u;
const K2: u32 = {{K2}}u;
const S0: u32 = {{S0}}u;
const S1: u32 = {{S1}}u;
const S2: u32 = {{S2}}u;
const D0: u32 = {{D0}}u;
const D1: u32 = {{D1}}u;
const D2: u32 = {{D2}}u;
const P0: u32 = {{P0}}u;
const P1: u32 = {{P1}}u;
const P2: u32 = {{P2}}u;
const L0: u32 = {{L0}}u;
const L1: u32 = {{L1}}u;
const L2: u32 = {{L2}}u;
const GRID_X: u32 = {{GRID_X}}u;
const GRID_Y: u32 = {{GRID_Y}}u;
const IN_SZ: u32 = IN0 * IN1 * IN2;

{{BINDINGS}}

// Taps j in 0..k with o * s + j * d < lim (inside the explicitly padded input).
fn counted(o: u32, s: u32, d: u32, k: u32, lim: u32) -> u32 {
    let start = o * s;
    if (start >= lim) {
        return 0u;
    }
    return min(k, (lim - start - 1u) / d + 1u);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = ((wid.z * GRID_Y + wid.y) * GRID_X + wid.x) * 64u + lid.x;
    if (idx >= TOTAL) {
        return;
    }
    let o2 = idx % OUT2;
    var r = idx / OUT2;
    let o1 = r % OUT1;
    r = r / OUT1;
    let o0 = r % OUT0;
    let plane = r / OUT0;
    let base = plane * IN_SZ;
{{INIT}}
    for (var k0 = 0u; k0 < K0; k0 = k0 + 1u) {
        let p0 = o0 * S0 + k0 * D0;
        if (p0 < P0 || p0 - P0 >= IN0) {
            continue;
        }
        let i0 = p0 - P0;
        for (var k1 = 0u; k1 < K1; k1 = k1 + 1u) {
            let p1 = o1 * S1 + k1 * D1;
            if (p1 < P1 || p1 - P1 >= IN1) {
                continue;
            }
            let i1 = p1 - P1;
            for (var k2 = 0u; k2 < K2; k2 = k2 + 1u) {
                let p2 = o2 * S2 + k2 * D2;
                if (p2 < P2 || p2 - P2 >= IN2) {
                    continue;
                }
                let i2 = p2 - P2;
                let off = (i0 * IN1 + i1) * IN2 + i2;
                let v = x[base + off];
{{ACCUM}}
            }
        }
    }
    y[idx] = {{RESULT}};
{{EXTRA_STORE}}
}
