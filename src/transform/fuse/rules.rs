//! The rule files (`passes/*.rules`): parsing and compiling to egg rewrites.
//!
//! The syntax is described in `passes/README.md`. In short:
//!
//! ```text
//! # a comment
//! rule mul-by-one
//!   (Mul ?x 1) => ?x
//!   if (keeps-shape ?x)
//!
//! kernel elementwise Add Sub Mul
//! ```
//!
//! A rule has a kebab-case name, a left pattern, `=>`, a right pattern and
//! optional conditions. Patterns are s-expressions: `(Op child ...)`, where `Op`
//! may carry attributes (`ReduceMean{keepdims=1}`) and a domain
//! (`com.microsoft::Gelu`); `?x` is a variable; a number on the left matches a
//! constant whose elements all equal it; `$name` on the right is a value computed by
//! a condition (an attribute value, or a new constant in a child position).
//! Conditions are named Rust functions (see [`super::conds`]); a parse error
//! names the file and line.
//!
//! ```
//! let rules = modc::fuse_rules::parse_rules("t.rules", "rule add-zero\n  (Add ?x 0) => ?x\n  if (keeps-shape ?x)\n").unwrap();
//! assert_eq!(rules.rules[0].name, "add-zero");
//! ```

use super::conds::{self, CondArg, CondFn};
use std::collections::BTreeMap;

/// A syntax or meaning error in a rule file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// An attribute value written in a pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrLit {
    Int(i64),
    Float(f64),
    Str(String),
    Ints(Vec<i64>),
    /// `$name`: bound by a condition.
    Bind(String),
}

/// An op name as written: domain, op type, attributes.
type OpHead = (String, String, Vec<(String, AttrLit)>);

/// A pattern of a rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Pat {
    Var(String),
    /// `$name` in a child position: a constant made by a condition.
    Bind(String),
    Num(f64),
    Op {
        op: String,
        domain: String,
        attrs: Vec<(String, AttrLit)>,
        children: Vec<Pat>,
    },
}

/// One condition of a rule.
#[derive(Clone, Debug)]
pub struct Cond {
    pub name: String,
    pub args: Vec<CondArg>,
    pub func: CondFn,
}

/// One rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub file: String,
    pub line: usize,
    pub lhs: Pat,
    pub rhs: Pat,
    pub conds: Vec<Cond>,
}

impl Rule {
    /// Whether the right side uses only default-domain ops (a recognition that
    /// produces standard ONNX).
    pub fn is_standard(&self) -> bool {
        fn std_only(p: &Pat) -> bool {
            match p {
                Pat::Op {
                    domain, children, ..
                } => domain.is_empty() && children.iter().all(std_only),
                _ => true,
            }
        }
        std_only(&self.rhs)
    }
}

/// A parsed rule file (or several, merged).
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// `kernel CLASS op ...` declarations: class → ops.
    pub kernels: BTreeMap<String, Vec<String>>,
}

/// The rule files shipped with modc, by name.
pub const BUILTIN_RULES: &[(&str, &str)] = &[
    (
        "algebra.rules",
        include_str!("../../../passes/algebra.rules"),
    ),
    (
        "recognize.rules",
        include_str!("../../../passes/recognize.rules"),
    ),
    (
        "contrib.rules",
        include_str!("../../../passes/contrib.rules"),
    ),
    ("fusion.rules", include_str!("../../../passes/fusion.rules")),
];

/// Parses and merges the built-in rule files.
pub fn builtin_rules() -> Result<RuleSet, RuleError> {
    let mut set = RuleSet::default();
    for (file, text) in BUILTIN_RULES {
        let one = parse_rules(file, text)?;
        set.rules.extend(one.rules);
        for (k, v) in one.kernels {
            set.kernels.entry(k).or_default().extend(v);
        }
    }
    Ok(set)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Arrow,
    Word(String),
}

struct Lexer<'a> {
    file: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

fn lex(file: &str, text: &str) -> Result<Vec<(Tok, usize)>, RuleError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let code = match raw.find('#') {
            Some(p) if !in_braces(raw, p) => &raw[..p],
            _ => raw,
        };
        let chars: Vec<char> = code.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            if c.is_whitespace() {
                j += 1;
            } else if c == '(' {
                out.push((Tok::Open, line));
                j += 1;
            } else if c == ')' {
                out.push((Tok::Close, line));
                j += 1;
            } else if c == '=' && chars.get(j + 1) == Some(&'>') {
                out.push((Tok::Arrow, line));
                j += 2;
            } else {
                let start = j;
                let mut depth = 0;
                while j < chars.len() {
                    let c = chars[j];
                    if c == '{' {
                        depth += 1;
                    } else if c == '}' {
                        if depth == 0 {
                            return Err(RuleError {
                                file: file.into(),
                                line,
                                message: "unmatched '}'".into(),
                            });
                        }
                        depth -= 1;
                    } else if depth == 0 && (c.is_whitespace() || c == '(' || c == ')') {
                        break;
                    }
                    j += 1;
                }
                if depth != 0 {
                    return Err(RuleError {
                        file: file.into(),
                        line,
                        message: "unclosed '{' (attributes must be on one line)".into(),
                    });
                }
                out.push((Tok::Word(chars[start..j].iter().collect()), line));
            }
        }
    }
    Ok(out)
}

fn in_braces(s: &str, pos: usize) -> bool {
    let before = &s[..pos];
    before.matches('{').count() > before.matches('}').count()
        || before.matches('"').count() % 2 == 1
}

impl Lexer<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map(|t| t.1)
            .unwrap_or(1)
    }
    fn err(&self, message: impl Into<String>) -> RuleError {
        RuleError {
            file: self.file.into(),
            line: self.line(),
            message: message.into(),
        }
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }
    fn pattern(&mut self, rhs: bool) -> Result<Pat, RuleError> {
        match self.next() {
            Some(Tok::Open) => {
                let head = match self.next() {
                    Some(Tok::Word(w)) => w,
                    _ => return Err(self.err("expected an op name after '('")),
                };
                let (domain, op, attrs) = self.op_head(&head)?;
                let mut children = Vec::new();
                loop {
                    match self.peek() {
                        Some(Tok::Close) => {
                            self.pos += 1;
                            break;
                        }
                        None => return Err(self.err(format!("unclosed '(' of {op}"))),
                        _ => children.push(self.pattern(rhs)?),
                    }
                }
                Ok(Pat::Op {
                    op,
                    domain,
                    attrs,
                    children,
                })
            }
            Some(Tok::Word(w)) => {
                if let Some(v) = w.strip_prefix('?') {
                    if v.is_empty() {
                        return Err(self.err("a variable needs a name: ?x"));
                    }
                    Ok(Pat::Var(w.clone()))
                } else if let Some(b) = w.strip_prefix('$') {
                    if !rhs {
                        return Err(
                            self.err(format!("${b}: computed values only go on the right side"))
                        );
                    }
                    Ok(Pat::Bind(b.to_string()))
                } else if let Ok(n) = w.parse::<f64>() {
                    if rhs {
                        return Err(self.err(format!(
                            "a literal constant ({w}) cannot be made on the right side; compute it with a condition ($name)"
                        )));
                    }
                    Ok(Pat::Num(n))
                } else {
                    Err(self.err(format!(
                        "expected '(', ?var, $value or a number, found '{w}'"
                    )))
                }
            }
            Some(Tok::Close) => Err(self.err("unexpected ')'")),
            Some(Tok::Arrow) => Err(self.err("unexpected '=>'")),
            None => Err(self.err("unexpected end of file in a pattern")),
        }
    }

    fn op_head(&self, head: &str) -> Result<OpHead, RuleError> {
        let (name, attrs) = match head.find('{') {
            Some(p) => {
                let inner = head[p + 1..]
                    .strip_suffix('}')
                    .ok_or_else(|| self.err(format!("'{head}': text after the attributes")))?;
                (&head[..p], parse_attr_list(inner).map_err(|m| self.err(m))?)
            }
            None => (head, vec![]),
        };
        let (domain, op) = match name.rsplit_once("::") {
            Some((d, o)) => (d.to_string(), o.to_string()),
            None => (String::new(), name.to_string()),
        };
        if op.is_empty() || !op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.err(format!("'{name}' is not an op name")));
        }
        Ok((domain, op, attrs))
    }
}

fn parse_attr_list(text: &str) -> Result<Vec<(String, AttrLit)>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("attribute '{rest}' needs name=value"))?;
        let after = after.trim_start();
        let (value, tail) = if after.starts_with('[') {
            let end = after.find(']').ok_or("unclosed '[' in an attribute")?;
            (&after[..=end], &after[end + 1..])
        } else if let Some(s) = after.strip_prefix('"') {
            let end = s.find('"').ok_or("unclosed string in an attribute")?;
            (&after[..end + 2], &s[end + 1..])
        } else {
            match after.find(',') {
                Some(p) => (&after[..p], &after[p..]),
                None => (after, ""),
            }
        };
        let value = value.trim();
        let lit = if let Some(b) = value.strip_prefix('$') {
            AttrLit::Bind(b.to_string())
        } else if let Some(s) = value.strip_prefix('"') {
            AttrLit::Str(s.trim_end_matches('"').to_string())
        } else if let Some(list) = value.strip_prefix('[') {
            let list = list.trim_end_matches(']');
            let v: Result<Vec<i64>, _> = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse::<i64>())
                .collect();
            AttrLit::Ints(v.map_err(|_| format!("'{value}': only int lists are supported"))?)
        } else if let Ok(i) = value.parse::<i64>() {
            AttrLit::Int(i)
        } else if let Ok(f) = value.parse::<f64>() {
            AttrLit::Float(f)
        } else {
            return Err(format!("'{value}' is not an attribute value"));
        };
        out.push((name.trim().to_string(), lit));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

/// Parses one rule file.
pub fn parse_rules(file: &str, text: &str) -> Result<RuleSet, RuleError> {
    let mut lx = Lexer {
        file,
        toks: lex(file, text)?,
        pos: 0,
    };
    let mut set = RuleSet::default();
    while let Some(t) = lx.next() {
        let line = lx.toks[lx.pos - 1].1;
        match t {
            Tok::Word(w) if w == "rule" => {
                let name = match lx.next() {
                    Some(Tok::Word(n)) => n,
                    _ => return Err(lx.err("expected a rule name after 'rule'")),
                };
                if !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err(RuleError {
                        file: file.into(),
                        line,
                        message: format!("rule name '{name}' must be kebab-case"),
                    });
                }
                if set.rules.iter().any(|r| r.name == name) {
                    return Err(RuleError {
                        file: file.into(),
                        line,
                        message: format!("rule '{name}' is defined twice"),
                    });
                }
                let lhs = lx.pattern(false)?;
                if !matches!(lhs, Pat::Op { .. }) {
                    return Err(lx.err(format!(
                        "rule '{name}': the left side must be an op pattern"
                    )));
                }
                if lx.next() != Some(Tok::Arrow) {
                    return Err(lx.err(format!(
                        "rule '{name}': expected '=>' after the left pattern"
                    )));
                }
                let rhs = lx.pattern(true)?;
                let mut conds = Vec::new();
                if lx.peek() == Some(&Tok::Word("if".into())) {
                    lx.pos += 1;
                    while lx.peek() == Some(&Tok::Open) {
                        conds.push(parse_cond(&mut lx)?);
                    }
                }
                check_vars(&lx, &name, &lhs, &rhs, &conds)?;
                set.rules.push(Rule {
                    name,
                    file: file.into(),
                    line,
                    lhs,
                    rhs,
                    conds,
                });
            }
            Tok::Word(w) if w == "kernel" => {
                let class = match lx.next() {
                    Some(Tok::Word(n)) => n,
                    _ => return Err(lx.err("expected a class name after 'kernel'")),
                };
                let ops = set.kernels.entry(class).or_default();
                while let Some(Tok::Word(w)) = lx.peek() {
                    if w == "rule" || w == "kernel" {
                        break;
                    }
                    ops.push(w.clone());
                    lx.pos += 1;
                }
            }
            Tok::Word(w) => {
                return Err(RuleError {
                    file: file.into(),
                    line,
                    message: format!("expected 'rule' or 'kernel', found '{w}'"),
                })
            }
            _ => {
                return Err(RuleError {
                    file: file.into(),
                    line,
                    message: "expected 'rule' or 'kernel'".into(),
                })
            }
        }
    }
    Ok(set)
}

fn parse_cond(lx: &mut Lexer) -> Result<Cond, RuleError> {
    lx.next(); // '('
    let name = match lx.next() {
        Some(Tok::Word(w)) => w,
        _ => return Err(lx.err("expected a condition name after '('")),
    };
    let Some((kinds, func)) = conds::lookup(&name) else {
        return Err(lx.err(format!(
            "unknown condition '{name}' (known: {})",
            conds::names().join(", ")
        )));
    };
    let mut args = Vec::new();
    loop {
        match lx.next() {
            Some(Tok::Close) => break,
            Some(Tok::Word(w)) => {
                if w.starts_with('?') {
                    args.push(CondArg::Var(
                        w.parse().map_err(|_| lx.err(format!("bad variable {w}")))?,
                    ));
                } else if let Some(b) = w.strip_prefix('$') {
                    args.push(CondArg::Bind(b.to_string()));
                } else if let Ok(n) = w.parse::<f64>() {
                    args.push(CondArg::Num(n));
                } else {
                    return Err(lx.err(format!("condition '{name}': bad argument '{w}'")));
                }
            }
            _ => return Err(lx.err(format!("condition '{name}' is not closed"))),
        }
    }
    let ok = kinds.len() == args.len()
        && kinds.chars().zip(&args).all(|(k, a)| {
            matches!(
                (k, a),
                ('v', CondArg::Var(_)) | ('b', CondArg::Bind(_)) | ('n', CondArg::Num(_))
            )
        });
    if !ok {
        return Err(lx.err(format!(
            "condition '{name}' takes ({}) ",
            kinds
                .chars()
                .map(|k| match k {
                    'v' => "?var",
                    'b' => "$value",
                    _ => "number",
                })
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    Ok(Cond { name, args, func })
}

fn pat_vars(p: &Pat, vars: &mut Vec<String>, binds: &mut Vec<String>) {
    match p {
        Pat::Var(v) => vars.push(v.clone()),
        Pat::Bind(b) => binds.push(b.clone()),
        Pat::Num(_) => {}
        Pat::Op {
            attrs, children, ..
        } => {
            for (_, a) in attrs {
                if let AttrLit::Bind(b) = a {
                    binds.push(b.clone());
                }
            }
            for c in children {
                pat_vars(c, vars, binds);
            }
        }
    }
}

fn check_vars(
    lx: &Lexer,
    name: &str,
    lhs: &Pat,
    rhs: &Pat,
    conds: &[Cond],
) -> Result<(), RuleError> {
    let (mut lv, mut lb) = (vec![], vec![]);
    pat_vars(lhs, &mut lv, &mut lb);
    let (mut rv, mut rb) = (vec![], vec![]);
    pat_vars(rhs, &mut rv, &mut rb);
    if let Some(v) = rv.iter().find(|v| !lv.contains(v)) {
        return Err(lx.err(format!("rule '{name}': {v} is not bound by the left side")));
    }
    for c in conds {
        for a in &c.args {
            if let CondArg::Var(v) = a {
                if !lv.contains(&v.to_string()) {
                    return Err(lx.err(format!(
                        "rule '{name}': condition '{}' uses {v}, which the left side does not bind",
                        c.name
                    )));
                }
            }
        }
    }
    let made: Vec<String> = conds
        .iter()
        .flat_map(|c| c.args.iter())
        .filter_map(|a| match a {
            CondArg::Bind(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    if let Some(b) = rb.iter().find(|b| !made.contains(b)) {
        return Err(lx.err(format!(
            "rule '{name}': ${b} is not computed by any condition"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_parse() {
        let set = builtin_rules().unwrap();
        assert!(set.rules.len() > 10);
        assert!(set.kernels.contains_key("elementwise"));
    }

    #[test]
    fn kernel_classes_are_known() {
        let set = builtin_rules().unwrap();
        let mut k = crate::transform::fuse_kernels::KernelClasses::empty();
        for (class, ops) in &set.kernels {
            for op in ops {
                k.insert(class, op).unwrap();
            }
        }
        assert!(k.class_of("Add").is_some() && k.class_of("ReduceMean").is_some());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_rules("x.rules", "# c\nrule a-b\n  (Mul ?x 1) => ?y\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("x.rules:3:"), "{e}");
        let e =
            parse_rules("x.rules", "rule a\n (Mul ?x ?c) => ?x\n if (no-such ?c)\n").unwrap_err();
        assert!(e.to_string().contains("unknown condition 'no-such'"), "{e}");
        let e = parse_rules("x.rules", "rule A\n (Mul ?x ?c) => ?x\n").unwrap_err();
        assert!(e.to_string().contains("kebab-case"), "{e}");
        let e = parse_rules("x.rules", "rule a\n (Mul ?x ?c) ?x\n").unwrap_err();
        assert!(e.to_string().contains("expected '=>'"), "{e}");
        let e = parse_rules("x.rules", "rule a\n (Mul ?x ?c) => (Add ?x 1)\n").unwrap_err();
        assert!(e.to_string().contains("right side"), "{e}");
        let e = parse_rules(
            "x.rules",
            "rule a\n (Mul ?x ?c) => (Gelu{approximate=$a} ?x)\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("$a is not computed"), "{e}");
    }

    #[test]
    fn attributes_and_domains_parse() {
        let set = parse_rules(
            "t.rules",
            "rule g\n (Mul ?x (HardSigmoid{alpha=0.2, beta=0.5} ?x)) => (com.microsoft::Foo{mode=\"a b\", axes=[1,2]} ?x)\n",
        )
        .unwrap();
        let r = &set.rules[0];
        assert!(!r.is_standard());
        match &r.rhs {
            Pat::Op { domain, attrs, .. } => {
                assert_eq!(domain, "com.microsoft");
                assert_eq!(attrs[0], ("mode".to_string(), AttrLit::Str("a b".into())));
                assert_eq!(attrs[1], ("axes".to_string(), AttrLit::Ints(vec![1, 2])));
            }
            other => panic!("{other:?}"),
        }
    }
}
