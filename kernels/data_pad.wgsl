// Pad: each output element reads the input element src(i) maps it to, or takes
// the constant VALUE where src(i) is -1 (constant mode outside the input).
// src(i) bakes in the pads and the mode (constant, edge, reflect, wrap).

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{T}}>;

const N: u32 = {{N}}u;

{{SRC}}

fn value() -> {{T}} {
    {{VALUE}}
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i >= N) {
        return;
    }
    let s = src(i);
    if (s < 0) {
        y[i] = value();
    } else {
        y[i] = x[s];
    }
}
