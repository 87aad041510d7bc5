// Row normalizations, one workgroup per row of LEN elements; element k of row
// `row` is at (row / INNER) * LEN * INNER + row % INNER + k * INNER.
// MODE 0: (x - mean) / sqrt(var + EPS) * scale + bias (LayerNormalization,
//         InstanceNormalization; two passes for the variance, as the interpreter);
// MODE 1: x / sqrt(mean(x²) + EPS) * scale (RMSNormalization);
// MODE 2, 3: x / Σ|x| or x / sqrt(Σx²), 0 where the norm is 0 (LpNormalization).
// A dispatch normalises rows start..start+count of P; x, y and the statistics
// may be windows of larger tensors starting at elements *_base (tiling).

{{BINDINGS}}
{{PART}}

const LEN: u32 = {{LEN}}u;
const INNER: u32 = {{INNER}}u;
const WG: u32 = {{WG}}u;
const MODE: u32 = {{MODE}}u;
const EPS: f32 = {{EPS}};

var<workgroup> part: array<f32, WG>;

fn wg_sum(v: f32, lid: u32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            part[lid] = part[lid] + part[lid + s];
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

{{PARAMS}}

fn stats(row: u32, m: f32, inv: f32) {
    {{STATS}}
}

fn first(v: f32) -> f32 {
    switch MODE {
        case 0u: { return v; }
        case 2u: { return abs(v); }
        default: { return v * v; }
    }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.x + wid.y * nwg.x;
    let live = t < P.count;
    let row = P.start + t;
    var base = 0u;
    if (live) {
        base = (row / INNER) * LEN * INNER + row % INNER;
    }
    let xb = base - P.x_base;
    var a = 0.0;
    if (live) {
        for (var k = lid.x; k < LEN; k += WG) {
            a += first(x[xb + k * INNER]);
        }
    }
    let s1 = wg_sum(a, lid.x);
    let n = f32(max(LEN, 1u));
    var m = 0.0;
    var inv = 0.0;
    var norm = 0.0;
    if (MODE == 0u) {
        m = s1 / n;
        var b = 0.0;
        if (live) {
            for (var k = lid.x; k < LEN; k += WG) {
                let d = x[xb + k * INNER] - m;
                b += d * d;
            }
        }
        let var_ = wg_sum(b, lid.x) / n;
        inv = 1.0 / sqrt(var_ + EPS);
    } else if (MODE == 1u) {
        inv = 1.0 / sqrt(s1 / n + EPS);
    } else if (MODE == 2u) {
        norm = s1;
    } else {
        norm = sqrt(s1);
    }
    if (!live) {
        return;
    }
    for (var k = lid.x; k < LEN; k += WG) {
        let i = base + k * INNER;
        let v = x[i - P.x_base];
        let o = i - P.y_base;
        switch MODE {
            case 0u: { y[o] = (v - m) * inv * scale_at(i, row) + bias_at(i, row); }
            case 1u: { y[o] = v * inv * scale_at(i, row); }
            default: { y[o] = select(v / norm, 0.0, norm == 0.0); }
        }
    }
    if (lid.x == 0u) {
        stats(row, m, inv);
    }
}
