//! Filling kernel templates and laying out dispatch grids.
//!
//! A template is WGSL text with `{{NAME}}` placeholders; [`fill`] replaces each and
//! refuses a template with a placeholder left unfilled, so a typo in a key is an
//! error naming the kernel instead of a shader that fails to compile later.

use crate::codegen::spec::{DeviceLimits, Slot};

/// Replaces every `{{key}}` of `template` by its value.
pub(crate) fn fill(
    kernel: &str,
    template: &str,
    vars: &[(&str, String)],
) -> Result<String, String> {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    if let Some(at) = out.find("{{") {
        let name: String = out[at..].chars().take_while(|&c| c != '}').collect();
        return Err(format!(
            "kernel {kernel}: placeholder {name}}}}} is not filled"
        ));
    }
    Ok(out)
}

/// Workgroup counts for `groups` workgroups, no dimension above the device limit;
/// the shader computes its flat index as `(z * GRID_Y + y) * GRID_X + x` and
/// returns when that is `>= groups`.
pub(crate) fn grid(kernel: &str, groups: u64, limits: &DeviceLimits) -> Result<[u32; 3], String> {
    let max = u64::from(limits.max_workgroups_per_dim.max(1));
    let x = groups.clamp(1, max);
    let rest = groups.div_ceil(x);
    let y = rest.clamp(1, max);
    let z = rest.div_ceil(y).max(1);
    if z > max {
        return Err(format!(
            "kernel {kernel}: {groups} workgroups exceed the device's grid ({max} per dimension)"
        ));
    }
    Ok([x as u32, y as u32, z as u32])
}

/// The WGSL declaration of one storage binding.
pub(crate) fn binding(index: usize, name: &str, elem: &str, writable: bool) -> String {
    let access = if writable { "read_write" } else { "read" };
    format!("@group(0) @binding({index}) var<storage, {access}> {name}: array<{elem}>;")
}

/// Declarations for `slots` named `names`, in binding order, elements of `ty`
/// (a scalar type name or `vec4<...>` per binding).
pub(crate) fn bindings(slots: &[Slot], names: &[&str], types: &[String]) -> String {
    slots
        .iter()
        .zip(names)
        .zip(types)
        .enumerate()
        .map(|(i, ((slot, name), ty))| binding(i, name, ty, !slot.is_input()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An f32 as WGSL source.
pub(crate) fn f32_literal(v: f32) -> String {
    if v.is_finite() {
        format!("f32({v:?})")
    } else {
        format!("bitcast<f32>({}u)", v.to_bits())
    }
}

/// The body of a WGSL function `fn(bi: u32) -> vec2<u32>` returning the element
/// offsets of operands A and B for flat batch index `bi` of the broadcast batch
/// `shape`; `a` and `b` are each operand's element stride per batch dim (0 where it
/// broadcasts).
pub(crate) fn batch_offsets_body(shape: &[usize], a: &[usize], b: &[usize]) -> String {
    let mut s = String::from("    var r = bi;\n    var oa = 0u;\n    var ob = 0u;\n");
    for d in (0..shape.len()).rev() {
        if shape[d] == 1 {
            continue;
        }
        s.push_str(&format!(
            "    {{\n        let i = r % {n}u;\n        r = r / {n}u;\n        oa = oa + i * {sa}u;\n        ob = ob + i * {sb}u;\n    }}\n",
            n = shape[d],
            sa = a[d],
            sb = b[d]
        ));
    }
    s.push_str("    return vec2<u32>(oa, ob);");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_refuses_leftover_placeholders() {
        let t = "a {{X}} b {{Y}}";
        assert_eq!(
            fill("k", t, &[("X", "1".into()), ("Y", "2".into())]).unwrap(),
            "a 1 b 2"
        );
        let e = fill("k", t, &[("X", "1".into())]).unwrap_err();
        assert!(e.contains("{{Y}}") && e.contains("kernel k"), "{e}");
    }

    #[test]
    fn grid_respects_limits() {
        let l = DeviceLimits::default();
        assert_eq!(grid("k", 10, &l).unwrap(), [10, 1, 1]);
        assert_eq!(grid("k", 0, &l).unwrap(), [1, 1, 1]);
        let g = grid("k", 200_000, &l).unwrap();
        assert!(g.iter().all(|&d| d <= 65_535));
        assert!(u64::from(g[0]) * u64::from(g[1]) * u64::from(g[2]) >= 200_000);
        let tiny = DeviceLimits {
            max_workgroups_per_dim: 4,
            ..l
        };
        assert!(grid("k", 65, &tiny).is_err());
        assert_eq!(grid("k", 64, &tiny).unwrap(), [4, 4, 4]);
    }

    #[test]
    fn literals() {
        assert_eq!(f32_literal(1.0), "f32(1.0)");
        assert_eq!(f32_literal(f32::NEG_INFINITY), "bitcast<f32>(4286578688u)");
    }
}
