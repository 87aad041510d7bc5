// Reduction of ROWS rows of LEN elements each, one workgroup per row: each
// invocation folds a strided share of the row, then a tree in workgroup memory
// combines the partial results. Rows are numbered over the kept axes; element r
// of row `row` is x[row_base(row) + red_off(r)].
// With SHIFTED (LogSumExp) a first pass finds the row maximum and the fold adds
// exp(x - max).
//
// A dispatch reduces rows start..start+count of P; x and y may be windows of
// larger tensors starting at elements x_base and y_base (tiling).

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{T}}>;

struct Part { start: u32, count: u32, x_base: u32, y_base: u32 }
@group(0) @binding(2) var<uniform> P: Part;
const LEN: u32 = {{LEN}}u;
const WG: u32 = {{WG}}u;
const SHIFTED: bool = {{SHIFTED}};

var<workgroup> part: array<{{T}}, WG>;

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
    let t = wid.x + wid.y * nwg.x;
    let live = t < P.count;
    let row = P.start + t;
    var base: i32 = 0;
    if (live) {
        base = row_base(row) - i32(P.x_base);
    }
    var shift: {{T}} = {{ZERO}};
    if (SHIFTED) {
        var m: {{T}} = {{LOWEST}};
        if (live) {
            for (var r = lid.x; r < LEN; r += WG) {
                m = max_nan(m, x[base + red_off(r)]);
            }
        }
        part[lid.x] = m;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s = s / 2u) {
            if (lid.x < s) {
                part[lid.x] = max_nan(part[lid.x], part[lid.x + s]);
            }
            workgroupBarrier();
        }
        shift = part[0];
        workgroupBarrier();
        if (!is_finite(shift)) {
            shift = {{ZERO}};
        }
    }
    var acc: {{T}} = {{INIT}};
    if (live) {
        for (var r = lid.x; r < LEN; r += WG) {
            acc = combine(acc, load(x[base + red_off(r)], shift));
        }
    }
    part[lid.x] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            part[lid.x] = combine(part[lid.x], part[lid.x + s]);
        }
        workgroupBarrier();
    }
    if (live && lid.x == 0u) {
        y[row - P.y_base] = finish(part[0], shift);
    }
}
