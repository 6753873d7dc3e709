// embed_backward_link: links the rows that share an id, for a
// deterministic scatter-add without atomics (embed_backward.wgsl):
//   link[m]     = the smallest r > m with ids[r] == ids[m], or -1
//   link[M + m] = 1 if m is the first row with its id (its leader), else 0
// Rows with a negative id get (-1, 0): they belong to no table row.
// Bindings: ids(M) i32 read; link(2M) i32 write. Meta: M.
// Dispatch: ceil(M / WG) workgroups over (x, y); one invocation per row
// scans the other rows: O(M^2) compares in all, a few ms at M = 4096 on a GPU.
// Portability: an invocation scans at most M rows; the host keeps M below
// lavapipe's 65,535 loop iterations per invocation.
const WG: u32 = 64u;

struct Meta { m: u32 }

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read_write> link: array<i32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let m = (wid.y * nwg.x + wid.x) * WG + lid;
    let n = params.m;
    if (m >= n) {
        return;
    }
    let id = ids[m];
    var next = -1;
    var lead = 1;
    if (id < 0) {
        lead = 0;
    } else {
        for (var r = 0u; r < n; r++) {
            if (ids[r] == id) {
                if (r < m) {
                    lead = 0;
                } else if (r > m) {
                    next = i32(r);
                    break;
                }
            }
        }
    }
    link[m] = next;
    link[n + m] = lead;
}
