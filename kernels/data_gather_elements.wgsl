// GatherElements: y[i] = x at the coordinates of i, with the coordinate along
// the axis replaced by idx[i] (negative counts from the end; clamped to the
// axis). base(i) is the offset in x of the other coordinates.

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

const N: u32 = {{N}}u;
const DIM: i32 = {{DIM}};
const STRIDE: i32 = {{STRIDE}};

{{BASE}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i >= N) {
        return;
    }
    var k = idx[i];
    if (k < 0) {
        k += DIM;
    }
    k = clamp(k, 0, DIM - 1);
    y[i] = x[base(i) + k * STRIDE];
}
