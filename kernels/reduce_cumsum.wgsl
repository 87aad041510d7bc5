// CumSum along one axis, one invocation per line: element j of line `line` is at
// (line / INNER) * LEN * INNER + line % INNER + j * INNER. EXCLUSIVE writes the
// sum before the element; REVERSE runs from the end of the line.
//
// A dispatch scans lines start..start+count of P; x and y may be windows of
// larger tensors starting at elements x_base and y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{T}}>;

struct Part { start: u32, count: u32, x_base: u32, y_base: u32 }
@group(0) @binding(2) var<uniform> P: Part;
const LEN: u32 = {{LEN}}u;
const INNER: u32 = {{INNER}}u;
const EXCLUSIVE: bool = {{EXCLUSIVE}};
const REVERSE: bool = {{REVERSE}};

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (t >= P.count) {
        return;
    }
    let line = P.start + t;
    let base = (line / INNER) * LEN * INNER + line % INNER;
    var acc: {{T}} = {{T}}(0);
    for (var step = 0u; step < LEN; step++) {
        var j = step;
        if (REVERSE) {
            j = LEN - 1u - step;
        }
        let i = base + j * INNER;
        let v = x[i - P.x_base];
        if (EXCLUSIVE) {
            y[i - P.y_base] = acc;
            acc = acc + v;
        } else {
            acc = acc + v;
            y[i - P.y_base] = acc;
        }
    }
}
