// GatherElements: y[i] = x at the coordinates of i, with the coordinate along
// the axis replaced by idx[i] (negative counts from the end; clamped to the
// axis). base(i) is the offset in x of the other coordinates.
//
// A dispatch computes the outputs start..start+count of P; each binding may be a
// window of its tensor starting at element *_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

struct Part { start: u32, count: u32, x_base: u32, idx_base: u32, y_base: u32 }
@group(0) @binding(3) var<uniform> P: Part;

const DIM: i32 = {{DIM}};
const STRIDE: i32 = {{STRIDE}};

{{BASE}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (t >= P.count) {
        return;
    }
    let i = P.start + t;
    var k = idx[i - P.idx_base];
    if (k < 0) {
        k += DIM;
    }
    k = clamp(k, 0, DIM - 1);
    y[i - P.y_base] = x[u32(base(i) + k * STRIDE) - P.x_base];
}
