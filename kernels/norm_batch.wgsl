// BatchNormalization (inference) of an [N, C, spatial...] tensor, one invocation
// per element: y = x * k + (bias - mean * k) with k = scale / sqrt(var + EPS) of
// the element's channel (parameters of one element apply to every channel).

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> var_: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const N: u32 = {{N}}u;
const C: u32 = {{C}}u;
const S: u32 = {{S}}u;
const EPS: f32 = {{EPS}};

fn at(n: u32, c: u32) -> u32 {
    return select(c, 0u, n == 1u);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i >= N) {
        return;
    }
    let c = (i / S) % C;
    let k = scale[at(arrayLength(&scale), c)] / sqrt(var_[at(arrayLength(&var_), c)] + EPS);
    let off = bias[at(arrayLength(&bias), c)] - mean[at(arrayLength(&mean), c)] * k;
    y[i] = x[i] * k + off;
}
