// A strided copy: for each of the N indices i of an iteration space,
// y[dst(i)] = x[src(i)]. The offset functions bake in the shapes and strides of
// Transpose, Slice (negative steps too), Expand (stride 0), Tile (coordinates
// modulo the input's), DepthToSpace / SpaceToDepth (a transpose of a reshaped
// view), and one input of Concat or one output of Split. Elements are copied as
// their 32-bit patterns, whatever the element type.

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;

const N: u32 = {{N}}u;

{{SRC}}
{{DST}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i < N) {
        y[dst(i)] = x[src(i)];
    }
}
