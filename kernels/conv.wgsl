// Direct convolution (no im2col buffer) over 1-D to 3-D spatial dims, handled as
// 3-D with leading size-1 dims; groups, strides, dilations and pads.
//
// Each invocation computes TC output channels (of one group) at TP = 4
// consecutive positions along the last spatial dim: per input channel and kernel
// tap it loads 4 input values and TC weights for 4 * TC multiply-adds, so every
// value loaded is used several times (a register tile, as in matmul_tiled). A
// depthwise convolution uses TC = 1.
//
// Placeholders: sizes N C M CG MG GROUP; spatial IN0..
// OUT0.. K0.. S0.. D0.. P0.. (begin pads); TC; TOTAL
// invocations; GRID_X GRID_Y; generated BINDINGS ACC_DECL TAP
// STORE.

const N: u32 = {{N}}u;
const C: u32 = {{C}}u;
const M: u32 = {{M}}u;
const CG: u32 = {{CG}}u;
const MG: u32 = {{MG}}u;
const GROUP: u32 = {{GROUP}}u;
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
const TC: u32 = {{TC}}u;
const TP: u32 = 4u;
const TOTAL: u32 = {{TOTAL}}u;
const GRID_X: u32 = {{GRID_X}}u;
const GRID_Y: u32 = {{GRID_Y}}u;
const IN_SZ: u32 = IN0 * IN1 * IN2;
const OUT_SZ: u32 = OUT0 * OUT1 * OUT2;
const KSZ: u32 = K0 * K1 * K2;
const Q2: u32 = (OUT2 + TP - 1u) / TP;
const CBPG: u32 = (MG + TC - 1u) / TC;

{{BINDINGS}}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = ((wid.z * GRID_Y + wid.y) * GRID_X + wid.x) * 64u + lid.x;
    if (idx >= TOTAL) {
        return;
    }
    let q = idx % Q2;
    var r = idx / Q2;
    let o1 = r % OUT1;
    r = r / OUT1;
    let o0 = r % OUT0;
    r = r / OUT0;
    let cb = r % (GROUP * CBPG);
    let nb = r / (GROUP * CBPG);
    let g = cb / CBPG;
    let cg0 = (cb % CBPG) * TC;
    let m0 = g * MG + cg0;
    let o2 = q * TP;
{{ACC_DECL}}
    for (var ci = 0u; ci < CG; ci = ci + 1u) {
        let xbase = (nb * C + g * CG + ci) * IN_SZ;
        let wci = ci * KSZ;
        for (var k0 = 0u; k0 < K0; k0 = k0 + 1u) {
            let p0 = o0 * S0 + k0 * D0;
            if (p0 < P0 || p0 - P0 >= IN0) {
                continue;
            }
            for (var k1 = 0u; k1 < K1; k1 = k1 + 1u) {
                let p1 = o1 * S1 + k1 * D1;
                if (p1 < P1 || p1 - P1 >= IN1) {
                    continue;
                }
                let row = xbase + ((p0 - P0) * IN1 + (p1 - P1)) * IN2;
                let tap01 = wci + (k0 * K1 + k1) * K2;
                for (var k2 = 0u; k2 < K2; k2 = k2 + 1u) {
                    let tap = tap01 + k2;
{{TAP}}
                }
            }
        }
    }
    let ybase = ((nb * M + m0) * OUT0 + o0) * OUT1 * OUT2 + o1 * OUT2 + o2;
{{STORE}}
}
