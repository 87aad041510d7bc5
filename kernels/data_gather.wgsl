// Gather along one axis: the output is [OUTER, J, INNER] with J the number of
// indices; y[(o * J + j) * INNER + r] = x[(o * DIM + idx[j]) * INNER + r]. A
// negative index counts from the end; out-of-range indices are clamped (the
// interpreter rejects them) so no read leaves the buffer.

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

const N: u32 = {{N}}u;
const J: u32 = {{J}}u;
const INNER: u32 = {{INNER}}u;
const DIM: i32 = {{DIM}};

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i >= N) {
        return;
    }
    let r = i % INNER;
    let j = (i / INNER) % J;
    let o = i / (INNER * J);
    var k = idx[j];
    if (k < 0) {
        k += DIM;
    }
    k = clamp(k, 0, DIM - 1);
    y[i] = x[(o * u32(DIM) + u32(k)) * INNER + r];
}
