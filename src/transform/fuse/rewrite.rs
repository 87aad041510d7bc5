//! Rules to egg rewrites: the left side becomes a searcher, the right side and
//! the conditions an applier.
//!
//! egg's own `Pattern` compiles ground subterms to hash-cons lookups, which
//! cannot see attribute wildcards (`ReduceMean` matching any attributes) or
//! constant literals (`0.5` matching any all-0.5 constant), so the left side is
//! matched by [`PatternSearcher`], which walks e-classes and compares e-nodes with
//! `Language::matches`. The applier checks the conditions in order (they may
//! compute `$values`), then adds the right side and merges it with the match.

use super::conds::{Bindings, Bound, CondCtx};
use super::lang::{FuseGraph, Num, ONode, Region, ANY_ATTRS, PATTERN_CONST};
use super::rules::{AttrLit, Cond, Pat, Rule};
use crate::ir::attr::{Attr, AttrValue};
use egg::{Applier, ENodeOrVar, Id, Language, PatternAst, RecExpr, Rewrite, Subst, Symbol, Var};

fn attr_of(name: &str, lit: &AttrLit, b: &Bindings) -> Option<Attr> {
    let v = match lit {
        AttrLit::Int(i) => AttrValue::Int(*i),
        AttrLit::Float(f) => AttrValue::Float(*f as f32),
        AttrLit::Str(s) => AttrValue::String(s.as_bytes().to_vec().into()),
        AttrLit::Ints(v) => AttrValue::Ints(v.clone()),
        AttrLit::Bind(x) => match b.get(x)? {
            Bound::Attr(v) => v.clone(),
            _ => return None,
        },
    };
    Some(Attr::new(name, v))
}

/// Compiles the left side to an egg pattern.
fn lhs_ast(p: &Pat, out: &mut PatternAst<ONode>) -> Id {
    match p {
        Pat::Var(v) => out.add(ENodeOrVar::Var(
            v.parse::<Var>().expect("checked by the parser"),
        )),
        Pat::Num(n) => out.add(ENodeOrVar::ENode(ONode::Const {
            id: PATTERN_CONST,
            splat: Some(Num::new(*n)),
        })),
        Pat::Bind(_) => unreachable!("the parser refuses $values on the left"),
        Pat::Op {
            op,
            domain,
            attrs,
            children,
        } => {
            let kids: Vec<Id> = children.iter().map(|c| lhs_ast(c, out)).collect();
            let text = if attrs.is_empty() {
                ANY_ATTRS.to_string()
            } else {
                let list: Vec<Attr> = attrs
                    .iter()
                    .filter_map(|(k, v)| attr_of(k, v, &Bindings::default()))
                    .collect();
                format!("~{}", super::lang::canonical_attrs(&list))
            };
            out.add(ENodeOrVar::ENode(ONode::Op {
                op: Symbol::from(op.as_str()),
                domain: Symbol::from(domain.as_str()),
                attrs: Symbol::from(text),
                children: kids,
            }))
        }
    }
}

/// Adds the right side to the e-graph; `None` when a binding is missing.
fn instantiate(eg: &mut FuseGraph, p: &Pat, subst: &Subst, b: &Bindings) -> Option<Id> {
    match p {
        Pat::Var(v) => subst.get(v.parse::<Var>().ok()?).copied(),
        Pat::Num(_) => None,
        Pat::Bind(x) => match b.get(x)? {
            Bound::Tensor(t) => {
                let node = eg.analysis.intern_const(t.clone());
                Some(eg.add(node))
            }
            Bound::Class(id) => Some(*id),
            Bound::Attr(_) => None,
        },
        Pat::Op {
            op,
            domain,
            attrs,
            children,
        } => {
            let mut kids = Vec::with_capacity(children.len());
            for c in children {
                kids.push(instantiate(eg, c, subst, b)?);
            }
            let list: Option<Vec<Attr>> = attrs.iter().map(|(k, v)| attr_of(k, v, b)).collect();
            let sym = eg.analysis.intern_attrs(list?);
            Some(eg.add(ONode::op(op, domain, sym, kids)))
        }
    }
}

/// Checks the conditions, then adds the right side and merges it with the match.
struct RuleApplier {
    rhs: Pat,
    conds: Vec<Cond>,
}

impl Applier<ONode, Region> for RuleApplier {
    fn apply_one(
        &self,
        eg: &mut FuseGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<ONode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let mut b = Bindings::default();
        for c in &self.conds {
            let cx = CondCtx {
                eg,
                root: eclass,
                subst,
            };
            if !(c.func)(&cx, &c.args, &mut b) {
                return vec![];
            }
        }
        let Some(id) = instantiate(eg, &self.rhs, subst, &b) else {
            return vec![];
        };
        if eg.union(eclass, id) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// The left side as a searcher. egg's own `Pattern` compiles ground subterms to
/// hash-cons lookups, which cannot see attribute wildcards or constant literals;
/// this matcher walks e-classes and compares with [`Language::matches`].
pub struct PatternSearcher {
    ast: PatternAst<ONode>,
    vars: Vec<Var>,
}

impl PatternSearcher {
    fn new(ast: PatternAst<ONode>) -> PatternSearcher {
        let mut vars = Vec::new();
        for n in ast.as_ref() {
            if let ENodeOrVar::Var(v) = n {
                if !vars.contains(v) {
                    vars.push(*v);
                }
            }
        }
        PatternSearcher { ast, vars }
    }

    /// Extends each partial substitution with the matches of pattern node `p`
    /// against e-class `c`.
    fn match_at(&self, eg: &FuseGraph, p: Id, c: Id, substs: Vec<Subst>) -> Vec<Subst> {
        let c = eg.find(c);
        match &self.ast[p] {
            ENodeOrVar::Var(v) => substs
                .into_iter()
                .filter_map(|mut s| match s.get(*v) {
                    Some(&b) => (eg.find(b) == c).then_some(s),
                    None => {
                        s.insert(*v, c);
                        Some(s)
                    }
                })
                .collect(),
            ENodeOrVar::ENode(pn) => {
                let mut out = Vec::new();
                for n in eg[c].nodes.iter().filter(|n| pn.matches(n)) {
                    let mut cur = substs.clone();
                    for (&pk, &nk) in pn.children().iter().zip(n.children()) {
                        if cur.is_empty() {
                            break;
                        }
                        cur = self.match_at(eg, pk, nk, cur);
                    }
                    out.extend(cur);
                }
                out
            }
        }
    }
}

impl egg::Searcher<ONode, Region> for PatternSearcher {
    fn search_eclass_with_limit(
        &self,
        eg: &FuseGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<egg::SearchMatches<'_, ONode>> {
        let root = Id::from(self.ast.as_ref().len() - 1);
        let mut substs = self.match_at(
            eg,
            root,
            eclass,
            vec![Subst::with_capacity(self.vars.len())],
        );
        substs.dedup();
        substs.truncate(limit);
        (!substs.is_empty()).then_some(egg::SearchMatches {
            eclass,
            substs,
            ast: None,
        })
    }

    fn search_with_limit(
        &self,
        eg: &FuseGraph,
        limit: usize,
    ) -> Vec<egg::SearchMatches<'_, ONode>> {
        let root = self.ast.as_ref().last().expect("a pattern has a root");
        let ENodeOrVar::ENode(n) = root else {
            return vec![];
        };
        let Some(classes) = eg.classes_for_op(&n.discriminant()) else {
            return vec![];
        };
        let mut out = Vec::new();
        let mut left = limit;
        for c in classes {
            if left == 0 {
                break;
            }
            if let Some(m) = self.search_eclass_with_limit(eg, c, left) {
                left -= m.substs.len();
                out.push(m);
            }
        }
        out
    }

    fn vars(&self) -> Vec<Var> {
        self.vars.clone()
    }
}

/// Compiles rules to egg rewrites.
pub fn compile(rules: &[&Rule]) -> Vec<Rewrite<ONode, Region>> {
    rules
        .iter()
        .filter_map(|r| {
            let mut ast = RecExpr::default();
            lhs_ast(&r.lhs, &mut ast);
            let searcher = PatternSearcher::new(ast);
            let applier = RuleApplier {
                rhs: r.rhs.clone(),
                conds: r.conds.clone(),
            };
            Rewrite::new(r.name.as_str(), searcher, applier).ok()
        })
        .collect()
}
