// Pad: each output element reads the input element src(i) maps it to, or takes
// the constant VALUE where src(i) is -1 (constant mode outside the input).
// src(i) bakes in the pads and the mode (constant, edge, reflect, wrap).
// A dispatch computes the outputs start..start+count of P; y may be a window of
// a larger output starting at element y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{T}}>;

struct Part { start: u32, count: u32, x_base: u32, y_base: u32 }
@group(0) @binding({{PBIND}}) var<uniform> P: Part;

{{SRC}}

fn value() -> {{T}} {
    {{VALUE}}
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (t >= P.count) {
        return;
    }
    let i = P.start + t;
    let s = src(i);
    if (s < 0) {
        y[i - P.y_base] = value();
    } else {
        y[i - P.y_base] = x[u32(s) - P.x_base];
    }
}
