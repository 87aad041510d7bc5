//! The text form: the IR's face in tests, snapshots and `modc inspect --ir`.
//!
//! One grammar, a printer and a parser. Printing is deterministic: nodes in
//! topological order, values numbered in that order, attributes sorted by name,
//! constants shown by name and type (never by data); graph inputs and outputs keep
//! their names. `parse(print(m))` prints the same text again.
//!
//! ```text
//! opset _=17
//! graph @main(%x: f32[batch,3,224,224]) -> (%y) {
//!   %w0 = const f32[64,3,7,7] @conv1.weight
//!   %0 = Conv(%x, %w0) {pads=[3,3,3,3], strides=[2,2]} : f32[batch,64,112,112]
//!   %y = Relu(%0) : f32[batch,64,112,112]
//!   return %y
//! }
//! ```
//!
//! Grammar (informally):
//!
//! ```text
//! model     := ("opset" opsets)? graph function*
//! opsets    := domain "=" int ("," domain "=" int)*        domain: `_` is the default domain
//! graph     := "graph" "@" name "(" params? ")" "->" "(" labels? ")" "{" stmt* "return" labels? "}"
//! param     := %label ":" type ("=" "const" tensortype)?
//! stmt      := %label "=" "const" ("sparse")? tensortype "@" name literal?
//!            | outs "=" op "(" ins? ")" attrs? (":" types)?
//!            | op "(" ins? ")" attrs?                    (a node with no outputs)
//! outs, ins := (%label | "_") ("," ...)*                  `_`: an empty slot
//! op        := (domain "::")? name
//! attrs     := "{" name "=" attr ("," ...)* "}"
//! type      := dtype shape | "sparse<" ... ">" | "seq<" type ">" | "map<" dtype "," type ">"
//!            | "opt<" type ">" | "opaque<" name "," name ">" | "unset" | "?"
//! shape     := "[" (dim ("," dim)*)? "]" | "[*]"           dim: int, name or `?`
//! function  := "function" domain "::" name "(" labels ")" "->" "(" labels ")"
//!              ("attrs" "(" ... ")")? ("opset" opsets)? "{" stmt* "return" labels "}"
//! ```
//!
//! A constant may carry a literal for hand-written fixtures (`@w [1.0, 2.0]`); the
//! printer never prints data.

mod parse;
mod print;

pub use parse::{parse_model, ParseError};
pub use print::{print_graph, print_model, print_model_with_data};

/// Whether `s` can be printed without quotes (a name of letters, digits, `_`, `.`
/// and `-`, not starting with a digit or `-`).
pub fn is_plain_ident(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    s != "_" && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// Quotes bytes as a string literal: printable ASCII as is, `"` and `\` escaped,
/// everything else as `\xNN`.
pub fn quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// A name as printed: plain if possible, quoted otherwise.
pub fn name_token(s: &str) -> String {
    if is_plain_ident(s) {
        s.to_string()
    } else {
        quote(s.as_bytes())
    }
}
