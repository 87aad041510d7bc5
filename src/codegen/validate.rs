//! Validating generated WGSL with naga, with no GPU.
//!
//! [`validate`] parses and validates a shader the way wgpu does before it
//! creates a pipeline; errors are rendered codespan-style against the source.
//! [`validate_dispatch`] also checks the shader against its [`Dispatch`]: a
//! compute entry point `main`, group-0 bindings only, each a storage buffer at a
//! slot's binding (never writable for a node input) or the uniform params at
//! binding `slots.len()`, and workgroup counts and sizes within the device
//! limits. Slots the shader does not declare are not bound (the runtime derives
//! the layout from the shader).
//!
//! ```
//! let ok = "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n\
//!           @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { y[g.x] = 1.0; }";
//! assert!(modc::codegen::validate::validate(ok).is_ok());
//! assert!(modc::codegen::validate::validate("fn main( {").is_err());
//! ```

use super::spec::{DeviceLimits, Dispatch};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// Parses and validates a WGSL module; the error is naga's rendered message.
pub fn validate(wgsl: &str) -> Result<(), String> {
    module(wgsl).map(|_| ())
}

fn module(wgsl: &str) -> Result<naga::Module, String> {
    let m = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&m)
        .map_err(|e| e.emit_to_string(wgsl))?;
    Ok(m)
}

/// Validates a dispatch's shader and checks it against the dispatch's bindings
/// and the device limits.
pub fn validate_dispatch(d: &Dispatch, limits: &DeviceLimits) -> Result<(), String> {
    let m = module(&d.wgsl)?;
    let ep = m
        .entry_points
        .iter()
        .find(|e| e.name == "main")
        .ok_or("no entry point named 'main'")?;
    if ep.stage != naga::ShaderStage::Compute {
        return Err("entry point 'main' is not a compute shader".into());
    }
    let invocations: u64 = ep.workgroup_size.iter().map(|&n| n as u64).product();
    if invocations > limits.max_invocations as u64 {
        return Err(format!(
            "workgroup size {:?} has {invocations} invocations; the device allows {}",
            ep.workgroup_size, limits.max_invocations
        ));
    }
    for (axis, &n) in d.workgroups.iter().enumerate() {
        if n > limits.max_workgroups_per_dim {
            return Err(format!(
                "{n} workgroups on axis {axis}; the device allows {}",
                limits.max_workgroups_per_dim
            ));
        }
    }
    for (_, g) in m.global_variables.iter() {
        let Some(b) = &g.binding else { continue };
        let name = g.name.as_deref().unwrap_or("?");
        if b.group != 0 {
            return Err(format!(
                "'{name}' is in group {}; dispatches bind group 0 only",
                b.group
            ));
        }
        let i = b.binding as usize;
        let slot = d.slots.get(i);
        let params = slot.is_none() && i == d.slots.len() && !d.params.is_empty();
        if slot.is_none() && !params {
            return Err(format!(
                "'{name}' is at binding {i}, but the dispatch has {} slots{}",
                d.slots.len(),
                if d.params.is_empty() {
                    ""
                } else {
                    " and params"
                }
            ));
        }
        match g.space {
            naga::AddressSpace::Uniform if params => {}
            naga::AddressSpace::Uniform => {
                return Err(format!(
                    "'{name}' at binding {i} is a uniform, but binding {i} is slot {slot:?}"
                ))
            }
            naga::AddressSpace::Storage { .. } if params => {
                return Err(format!(
                    "'{name}' at binding {i} is a storage buffer, but binding {i} is the params uniform"
                ))
            }
            naga::AddressSpace::Storage { access } => {
                // Writing a node input would corrupt a weight or another node's tensor.
                if slot.is_some_and(|s| s.is_input()) && access.contains(naga::StorageAccess::STORE) {
                    return Err(format!(
                        "'{name}' at binding {i} is read-write storage, but slot {slot:?} is a node input (read-only)"
                    ));
                }
            }
            s => return Err(format!("'{name}' at binding {i}: address space {s:?} is not a buffer")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::spec::Slot;

    fn dispatch(wgsl: &str, slots: Vec<Slot>, params: Vec<u32>) -> Dispatch {
        Dispatch {
            label: "t".into(),
            wgsl: wgsl.into(),
            slots,
            params,
            workgroups: [1, 1, 1],
        }
    }

    const COPY: &str = "@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
        @group(0) @binding(1) var<storage, read_write> y: array<f32>;\n\
        @group(0) @binding(2) var<uniform> p: vec4<u32>;\n\
        @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {\n\
          if (g.x < p.x) { y[g.x] = x[g.x]; }\n}\n";

    #[test]
    fn accepts_a_matching_dispatch() {
        let d = dispatch(
            COPY,
            vec![Slot::Input(0), Slot::Output(0)],
            vec![4, 0, 0, 0],
        );
        validate_dispatch(&d, &DeviceLimits::default()).unwrap();
    }

    #[test]
    fn reports_parse_errors_with_the_source() {
        let e = validate("fn main() { let x = ; }").unwrap_err();
        assert!(e.contains("error"), "{e}");
        assert!(e.contains("let x"), "{e}");
    }

    #[test]
    fn reports_validation_errors() {
        // Storing to a read-only buffer parses but does not validate.
        let e = validate(
            "@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
             @compute @workgroup_size(1) fn main() { x[0] = 1.0; }",
        )
        .unwrap_err();
        assert!(!e.is_empty());
    }

    #[test]
    fn checks_bindings_against_slots() {
        let d = dispatch(COPY, vec![Slot::Input(0), Slot::Output(0)], vec![]);
        let e = validate_dispatch(&d, &DeviceLimits::default()).unwrap_err();
        assert!(e.contains("binding 2"), "{e}");
        let d = dispatch(COPY, vec![Slot::Input(0), Slot::Input(1)], vec![4]);
        let e = validate_dispatch(&d, &DeviceLimits::default()).unwrap_err();
        assert!(e.contains("node input"), "{e}");
        let d = dispatch(
            COPY,
            vec![Slot::Input(0), Slot::Output(0), Slot::Temp(0)],
            vec![1],
        );
        let e = validate_dispatch(&d, &DeviceLimits::default()).unwrap_err();
        assert!(e.contains("binding 2"), "{e}");
    }

    #[test]
    fn checks_limits() {
        let mut d = dispatch(
            COPY,
            vec![Slot::Input(0), Slot::Output(0)],
            vec![4, 0, 0, 0],
        );
        d.workgroups = [70_000, 1, 1];
        let e = validate_dispatch(&d, &DeviceLimits::default()).unwrap_err();
        assert!(e.contains("70000 workgroups"), "{e}");
        d.workgroups = [1, 1, 1];
        d.wgsl = COPY.replace("workgroup_size(64)", "workgroup_size(512)");
        let e = validate_dispatch(&d, &DeviceLimits::default()).unwrap_err();
        assert!(e.contains("512 invocations"), "{e}");
    }
}
