// ArgMax / ArgMin along one axis, one invocation per output: element j of row
// `row` is x[row_base(row) + j * STRIDE]. The first extreme wins (the last with
// SELECT_LAST); a NaN wins over every number, as in numpy.
//
// A dispatch reduces rows start..start+count of P; x and y may be windows of
// larger tensors starting at elements x_base and y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<i32>;

struct Part { start: u32, count: u32, x_base: u32, y_base: u32 }
@group(0) @binding(2) var<uniform> P: Part;
const LEN: u32 = {{LEN}}u;
const STRIDE: i32 = {{STRIDE}};
const SELECT_LAST: bool = {{SELECT_LAST}};

{{ROW_BASE}}

fn better(c: {{T}}, b: {{T}}) -> bool {
    return {{BETTER}};
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (t >= P.count) {
        return;
    }
    let row = P.start + t;
    let base = row_base(row) - i32(P.x_base);
    var best = 0u;
    var b = x[base];
    for (var j = 1u; j < LEN; j++) {
        let c = x[base + i32(j) * STRIDE];
        if (b != b) {
            if (SELECT_LAST && c != c) {
                best = j;
                b = c;
            }
            continue;
        }
        if (c != c || better(c, b) || (SELECT_LAST && c == b)) {
            best = j;
            b = c;
        }
    }
    y[row - P.y_base] = i32(best);
}
