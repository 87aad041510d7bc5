// Writes VALUE to every one of the N elements of y (ConstantOfShape, Shape and
// reductions over nothing).

@group(0) @binding(0) var<storage, read_write> y: array<{{T}}>;

const N: u32 = {{N}}u;

fn value(i: u32) -> {{T}} {
    {{VALUE_FN}}
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i < N) {
        y[i] = value(i);
    }
}
