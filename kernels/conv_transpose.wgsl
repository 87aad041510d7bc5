// Transposed convolution (ONNX ConvTranspose) as a direct gather over 1-D to 3-D
// spatial dims, handled as 3-D with leading size-1 dims; groups, strides,
// dilations, pads (of the equivalent forward convolution) and an output larger
// or smaller than the full one (output_padding, output_shape).
//
// Input position i and kernel tap k write output position o = i * S + k * D - P.
// Each invocation computes one output element: for every tap it solves for i
// (o + P - k * D must be a non-negative multiple of S with i < IN) and sums
// x[i] * w[tap] over the group's input channels.
//
// Placeholders: sizes C M CG MG; spatial IN0.. OUT0.. K0.. S0.. D0.. P0.. (begin
// pads); TOTAL invocations; GRID_X GRID_Y; generated BINDINGS and BIAS (the bias
// term added to the sum, or nothing).

const C: u32 = {{C}}u;
const M: u32 = {{M}}u;
const CG: u32 = {{CG}}u;
const MG: u32 = {{MG}}u;
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
const TOTAL: u32 = {{TOTAL}}u;
const GRID_X: u32 = {{GRID_X}}u;
const GRID_Y: u32 = {{GRID_Y}}u;
const IN_SZ: u32 = IN0 * IN1 * IN2;
const KSZ: u32 = K0 * K1 * K2;

{{BINDINGS}}

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
    r = r / OUT0;
    let mo = r % M;
    let nb = r / M;
    let g = mo / MG;
    let mi = mo % MG;
    // Input channel ci of the group: x plane (nb * C + g * CG + ci), weight row
    // ((g * CG + ci) * MG + mi).
    let xbase = (nb * C + g * CG) * IN_SZ;
    let wbase = (g * CG * MG + mi) * KSZ;
    var acc = 0.0;
    for (var k0 = 0u; k0 < K0; k0 = k0 + 1u) {
        let t0 = o0 + P0;
        if (t0 < k0 * D0 || (t0 - k0 * D0) % S0 != 0u || (t0 - k0 * D0) / S0 >= IN0) {
            continue;
        }
        let i0 = (t0 - k0 * D0) / S0;
        for (var k1 = 0u; k1 < K1; k1 = k1 + 1u) {
            let t1 = o1 + P1;
            if (t1 < k1 * D1 || (t1 - k1 * D1) % S1 != 0u || (t1 - k1 * D1) / S1 >= IN1) {
                continue;
            }
            let i1 = (t1 - k1 * D1) / S1;
            for (var k2 = 0u; k2 < K2; k2 = k2 + 1u) {
                let t2 = o2 + P2;
                if (t2 < k2 * D2 || (t2 - k2 * D2) % S2 != 0u || (t2 - k2 * D2) / S2 >= IN2) {
                    continue;
                }
                let i2 = (t2 - k2 * D2) / S2;
                let xo = xbase + (i0 * IN1 + i1) * IN2 + i2;
                let wo = wbase + (k0 * K1 + k1) * K2 + k2;
                for (var ci = 0u; ci < CG; ci = ci + 1u) {
                    acc = fma(x[xo + ci * IN_SZ], w[wo + ci * MG * KSZ], acc);
                }
            }
        }
    }
    y[idx] = acc{{BIAS}};
}
