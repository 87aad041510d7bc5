// Trilu: keeps the elements on and above (UPPER) or on and below the K-th
// diagonal of each [ROWS, COLS] matrix, zero elsewhere.

@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> y: array<{{T}}>;

const N: u32 = {{N}}u;
const ROWS: u32 = {{ROWS}}u;
const COLS: u32 = {{COLS}}u;
const K: i32 = {{K}};
const UPPER: bool = {{UPPER}};

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid.x;
    if (i >= N) {
        return;
    }
    let c = i32(i % COLS);
    let r = i32((i / COLS) % ROWS);
    var keep = c - r <= K;
    if (UPPER) {
        keep = c - r >= K;
    }
    y[i] = select({{T}}(0), x[i], keep);
}
