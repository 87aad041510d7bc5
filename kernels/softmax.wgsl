// Softmax / LogSoftmax of ROWS rows of LEN elements, one workgroup per row.
// Element k of row `row` is at (row / INNER) * LEN * INNER + row % INNER + k * INNER
// (INNER = 1: contiguous rows). Stable: the row maximum is subtracted before exp;
// a row of -inf uses 0 instead, as the interpreter does.
// A dispatch computes rows start..start+count of P; x and y may be windows of
// larger tensors starting at elements x_base and y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

struct Part { start: u32, count: u32, x_base: u32, y_base: u32 }
@group(0) @binding(2) var<uniform> P: Part;

const LEN: u32 = {{LEN}}u;
const INNER: u32 = {{INNER}}u;
const WG: u32 = {{WG}}u;
const LOG: bool = {{LOG}};

var<workgroup> part: array<f32, WG>;

fn wg_max(v: f32, lid: u32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let o = part[lid + s];
            part[lid] = select(part[lid], o, o > part[lid]);
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

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
    let yb = base - P.y_base;
    let neg_inf = bitcast<f32>(0xff800000u);
    var m = neg_inf;
    if (live) {
        for (var k = lid.x; k < LEN; k += WG) {
            let v = x[xb + k * INNER];
            m = select(m, v, v > m);
        }
    }
    m = wg_max(m, lid.x);
    if (m == neg_inf) {
        m = 0.0;
    }
    var s = 0.0;
    if (live) {
        for (var k = lid.x; k < LEN; k += WG) {
            s += exp(x[xb + k * INNER] - m);
        }
    }
    s = wg_sum(s, lid.x);
    if (!live) {
        return;
    }
    let inv = 1.0 / s;
    let ln_s = log(s);
    for (var k = lid.x; k < LEN; k += WG) {
        let v = x[xb + k * INNER];
        if (LOG) {
            y[yb + k * INNER] = (v - m) - ln_s;
        } else {
            y[yb + k * INNER] = exp(v - m) * inv;
        }
    }
}
