// Reduction of ROWS short rows of LEN elements, one invocation per row (rows too
// short to share among a workgroup). Element r of row `row` is
// x[row_base(row) + red_off(r)]. With SHIFTED (LogSumExp) a first pass finds
// the row maximum and the fold adds exp(x - max).
//
// A dispatch reduces rows start..start+count of P; x and y may be windows of
// larger tensors starting at elements x_base and y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{T}}>;

struct Part { start: u32, count: u32, x_base: u32, y_base: u32 }
@group(0) @binding(2) var<uniform> P: Part;
const LEN: u32 = {{LEN}}u;
const SHIFTED: bool = {{SHIFTED}};

{{ROW_BASE}}
{{RED_OFF}}

fn combine(a: {{T}}, b: {{T}}) -> {{T}} {
    {{COMBINE}}
}

fn is_finite(v: {{T}}) -> bool {
    {{IS_FINITE}}
}

fn max_nan(a: {{T}}, b: {{T}}) -> {{T}} {
    return select(a, b, b > a || b != b);
}

fn load(v: {{T}}, shift: {{T}}) -> {{T}} {
    {{LOAD}}
}

fn finish(a: {{T}}, shift: {{T}}) -> {{T}} {
    {{FINISH}}
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
    var shift: {{T}} = {{ZERO}};
    if (SHIFTED) {
        var m: {{T}} = {{LOWEST}};
        for (var r = 0u; r < LEN; r++) {
            m = max_nan(m, x[base + red_off(r)]);
        }
        if (is_finite(m)) {
            shift = m;
        }
    }
    var acc: {{T}} = {{INIT}};
    for (var r = 0u; r < LEN; r++) {
        acc = combine(acc, load(x[base + red_off(r)], shift));
    }
    y[row - P.y_base] = finish(acc, shift);
}
