// Resize / Upsample: each output element reads its source element (nearest) or
// interpolates between two taps per resized axis (linear), the axes combined in
// ascending order like the interpreter's separable passes. The per-axis taps are
// computed on the host (in f64, as `ops/resize.rs`) and either baked in as exact
// integer formulas (nearest) or passed in the uniform table `p`: one vec4 per
// output position of a resized axis, (index0, index1, weight0 bits, weight1 bits).

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{T}}>;
{{TABLE}}
const N: u32 = {{N}}u;

// 0 + s0 * w0 + s1 * w1, skipping zero weights as the interpreter skips taps.
fn mix2(s0: f32, s1: f32, w0: f32, w1: f32) -> f32 {
    var d = 0.0f;
    if (w0 != 0.0f) {
        d = d + s0 * w0;
    }
    if (w1 != 0.0f) {
        d = d + s1 * w1;
    }
    return d;
}

{{VALUE}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i >= N) {
        return;
    }
    y[i] = value(i);
}
