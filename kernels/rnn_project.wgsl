// Input projection of RNN, GRU and LSTM for every time step at once:
//
//   xp[d, r, n] = Σ_k x[r, k] · w[d, n, k] + bias(d, n)
//
// for direction d < D, row r < ROWS of X seen as [ROWS, I] in X's own layout
// (time-major or batch-major), and gate unit n < GH. One invocation per
// element of xp; BIAS (generated) is the folded Wb (+ Rb) of unit n, or 0.

{{BINDINGS}}

const D: u32 = {{D}}u;
const ROWS: u32 = {{ROWS}}u;
const I: u32 = {{I}}u;
const GH: u32 = {{GH}}u;
const N: u32 = D * ROWS * GH;

fn bias(d: u32, n: u32) -> f32 {
    {{BIAS}}
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (e >= N) {
        return;
    }
    let n = e % GH;
    let r = (e / GH) % ROWS;
    let d = e / (GH * ROWS);
    let xb = r * I;
    let wb = (d * GH + n) * I;
    // Four partial sums, so the loop is not one chain of dependent adds.
    var acc = vec4<f32>(0.0);
    var k = 0u;
    for (; k + 4u <= I; k += 4u) {
        acc = fma(vec4<f32>(x[xb + k], x[xb + k + 1u], x[xb + k + 2u], x[xb + k + 3u]),
                  vec4<f32>(w[wb + k], w[wb + k + 1u], w[wb + k + 2u], w[wb + k + 3u]),
                  acc);
    }
    var s = (acc.x + acc.y) + (acc.z + acc.w);
    for (; k < I; k += 1u) {
        s = fma(x[xb + k], w[wb + k], s);
    }
    xp[e] = s + bias(d, n);
}
