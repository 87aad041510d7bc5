// The recurrence of RNN, GRU and LSTM. One workgroup per (direction d, batch
// entry b) runs the time steps in order; its invocations stride over the hidden
// units j. xp holds the input projection of every step (kernels/rnn_project.wgsl)
// and each step adds R·h. The state of a workgroup lies at st[base ..]:
//
//   [0, 2H)   h, ping-pong: step s reads h at (s % 2)·H and writes the other half,
//             so one barrier per step separates the reads from the next writes;
//   [2H, 3H)  c (LSTM), or the update gate z (GRU without linear_before_reset);
//   [3H, 4H)  r ⊙ h (GRU without linear_before_reset).
//
// st is workgroup memory, or SL words per workgroup of a storage buffer when the
// state does not fit (BARRIER is then storageBarrier). Steps past an entry's
// sequence length keep its state and write zeros to Y. Generated: BINDINGS,
// STATE_DECL, FUNCTIONS (activations, clip, index maps, initial state, seq_len,
// rev), STATE_BASE, INIT, STEP, STEP2 (the second phase of GRU), ZERO_Y, FINAL.

{{BINDINGS}}

const H: u32 = {{H}}u;
const S: u32 = {{S}}u;
const B: u32 = {{B}}u;
const D: u32 = {{D}}u;
const GH: u32 = {{GH}}u;
const ROWS: u32 = S * B;
const SL: u32 = {{SL}}u;
const WG: u32 = {{WG}}u;

{{STATE_DECL}}

{{FUNCTIONS}}

// Σ_k r[d, n, k] · st[hb + k]: row n of direction d's recurrence weights times
// the vector at st[hb ..].
fn rdot(d: u32, n: u32, hb: u32) -> f32 {
    let rb = (d * GH + n) * H;
    var acc = vec4<f32>(0.0);
    var k = 0u;
    for (; k + 4u <= H; k += 4u) {
        acc = fma(vec4<f32>(r[rb + k], r[rb + k + 1u], r[rb + k + 2u], r[rb + k + 3u]),
                  vec4<f32>(st[hb + k], st[hb + k + 1u], st[hb + k + 2u], st[hb + k + 3u]),
                  acc);
    }
    var s = (acc.x + acc.y) + (acc.z + acc.w);
    for (; k < H; k += 1u) {
        s = fma(r[rb + k], st[hb + k], s);
    }
    return s;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let live = g < D * B;
    let d = g / B;
    let b = g % B;
    let base = {{STATE_BASE}};
    let hc = base + 2u * H;
    let ha = base + 3u * H;
    var len = 0u;
    if (live) {
        len = seq_len(b);
        for (var j = lid.x; j < H; j += WG) {
            {{INIT}}
        }
    }
    {{BARRIER}}
    for (var s = 0u; s < S; s += 1u) {
        let cur = base + (s % 2u) * H;
        let nxt = base + ((s + 1u) % 2u) * H;
        let stepping = live && s < len;
        // The time step this step reads: the reverse direction starts at the
        // entry's own last step.
        let t = select(s, len - 1u - s, rev(d));
        let xr = (d * ROWS + xrow(t, b)) * GH;
        if (stepping) {
            for (var j = lid.x; j < H; j += WG) {
                {{STEP}}
            }
        } else if (live) {
            for (var j = lid.x; j < H; j += WG) {
                st[nxt + j] = st[cur + j];
                {{ZERO_Y}}
            }
        }
        {{STEP2}}
        {{BARRIER}}
    }
    if (live) {
        let last = base + (S % 2u) * H;
        for (var j = lid.x; j < H; j += WG) {
            {{FINAL}}
        }
    }
}
