// Range: y[i] = start + i * delta, start and delta read from their
// one-element inputs (the output's length came from shape inference).

@group(0) @binding(0) var<storage, read> start: array<{{T}}>;
@group(0) @binding(1) var<storage, read> delta: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> y: array<{{T}}>;

const N: u32 = {{N}}u;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i < N) {
        y[i] = start[0] + {{T}}(i) * delta[0];
    }
}
