// Global pooling (GlobalAveragePool, GlobalMaxPool): one workgroup of 64
// invocations per (batch, channel) plane; each invocation folds a strided part of
// the plane, then a tree in workgroup memory combines the 64 partial results.
//
// Placeholders: T; PLANES planes of SIZE elements; GRID_X
// GRID_Y; BINDINGS; IDENTITY the fold's start value; COMBINE an
// expression of `a` and `b`; FINISH the output from the folded `acc`.

const PLANES: u32 = {{PLANES}}u;
const SIZE: u32 = {{SIZE}}u;
const GRID_X: u32 = {{GRID_X}}u;
const GRID_Y: u32 = {{GRID_Y}}u;

{{BINDINGS}}

var<workgroup> part: array<{{T}}, 64>;

fn combine(a: {{T}}, b: {{T}}) -> {{T}} {
    return {{COMBINE}};
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let plane = (wid.z * GRID_Y + wid.y) * GRID_X + wid.x;
    if (plane >= PLANES) {
        return;
    }
    let base = plane * SIZE;
    var acc: {{T}} = {{IDENTITY}};
    for (var i = lid.x; i < SIZE; i = i + 64u) {
        acc = combine(acc, x[base + i]);
    }
    part[lid.x] = acc;
    workgroupBarrier();
    for (var step = 32u; step > 0u; step = step / 2u) {
        if (lid.x < step) {
            part[lid.x] = combine(part[lid.x], part[lid.x + step]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        let acc = part[0];
        y[plane] = {{FINISH}};
    }
}
