//! The GPU runtime: wgpu device, buffers from the memory plan, dispatch (being written).
