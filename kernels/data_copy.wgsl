// A strided copy: for each of the N indices i of an iteration space,
// y[dst(i)] = x[src(i)]. The offset functions bake in the shapes and strides of
// Transpose, Slice (negative steps too), Expand (stride 0), Tile (coordinates
// modulo the input's), DepthToSpace / SpaceToDepth (a transpose of a reshaped
// view), and one input of Concat or one output of Split. Elements are copied as
// their 32-bit patterns, whatever the element type.
//
// A dispatch copies the indices start..start+count of P; x and y may be windows
// of larger tensors starting at elements x_base and y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;

struct Part { start: u32, count: u32, x_base: u32, y_base: u32 }
@group(0) @binding(2) var<uniform> P: Part;

{{SRC}}
{{DST}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (t < P.count) {
        let i = P.start + t;
        y[u32(dst(i)) - P.y_base] = x[u32(src(i)) - P.x_base];
    }
}
