// Gather along one axis: the output is [OUTER, J, INNER] with J the number of
// indices; y[(o * J + j) * INNER + r] = x[(o * DIM + idx[j]) * INNER + r]. A
// negative index counts from the end; out-of-range indices are clamped (the
// interpreter rejects them) so no read leaves the buffer.
//
// A dispatch computes the outputs start..start+count of P and writes those whose
// index falls in rows k0..k1 of the gathered axis; x, idx and y may be windows of
// larger tensors starting at elements x_base, idx_base and y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

struct Part { start: u32, count: u32, k0: u32, k1: u32, x_base: u32, idx_base: u32, y_base: u32 }
@group(0) @binding(3) var<uniform> P: Part;

const J: u32 = {{J}}u;
const INNER: u32 = {{INNER}}u;
const DIM: i32 = {{DIM}};

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (t >= P.count) {
        return;
    }
    let i = P.start + t;
    let r = i % INNER;
    let j = (i / INNER) % J;
    let o = i / (INNER * J);
    var k = idx[j - P.idx_base];
    if (k < 0) {
        k += DIM;
    }
    let row = u32(clamp(k, 0, DIM - 1));
    if (row < P.k0 || row >= P.k1) {
        return;
    }
    y[i - P.y_base] = x[(o * u32(DIM) + row) * INNER + r - P.x_base];
}
