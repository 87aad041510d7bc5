//! String ops: StringNormalizer, StringConcat, StringSplit, RegexFullMatch,
//! TfIdfVectorizer and `ai.onnx.ml` LabelEncoder.
//!
//! Decisions where the spec is loose:
//! - StringNormalizer: the locale is ignored; case changes use Unicode's full
//!   mappings (Rust `to_lowercase`/`to_uppercase`), which match en_US.
//!   Case-insensitive stop-word matching compares lowercased strings. Only
//!   `[C]` and `[1, C]` inputs are accepted.
//! - StringSplit: no (or an empty) delimiter splits on runs of Unicode
//!   whitespace and drops leading/trailing whitespace, like Python's
//!   `str.split()`; a negative `maxsplit` means no limit.
//! - RegexFullMatch: the pattern is RE2 syntax run on the `regex` crate. RE2's
//!   Perl classes are ASCII-only, so `\d \w \s` (and negations) become ASCII
//!   classes and `\b \B` ASCII word boundaries; constructs the crate lacks are
//!   an `Invalid` pattern.
//! - TfIdfVectorizer follows onnxruntime: n-grams of the pool are stored in a
//!   trie; unigrams are counted once, longer n-grams once per skip distance;
//!   IDF/TFIDF weights are indexed by output position.
//! - LabelEncoder: keys must be of the input's kind (string, integer or float);
//!   float keys match by value, NaN matching NaN; a repeated key keeps its last
//!   value.

use super::broadcast::zip2;
use super::cast::cast_tensor;
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::dtype::DType;
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::hash::Hash;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("StringNormalizer", string_normalizer);
    r.add("StringConcat", string_concat);
    r.add("StringSplit", string_split);
    r.add("RegexFullMatch", regex_full_match);
    r.add("TfIdfVectorizer", tfidf_vectorizer);
    r.add_in("ai.onnx.ml", "LabelEncoder", label_encoder);
}

fn strings<'a>(t: &'a TensorValue, what: &str) -> Result<&'a ArrayD<String>, OpError> {
    match t {
        TensorValue::Str(a) => Ok(a),
        t => Err(OpError::Invalid(format!(
            "{what} must be a string tensor, not {}",
            t.dtype()
        ))),
    }
}

fn shaped<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, OpError> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| OpError::Invalid(e.to_string()))
}

// ---------------------------------------------------------------------------
// StringNormalizer
// ---------------------------------------------------------------------------

fn string_normalizer(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = strings(ctx.input(inputs, 0)?, "StringNormalizer input")?;
    let two_d = match x.shape() {
        [_] => false,
        [1, _] => true,
        s => {
            return Err(OpError::Invalid(format!(
                "StringNormalizer accepts [C] or [1, C] inputs, got {s:?}"
            )))
        }
    };
    let action = ctx
        .string("case_change_action")
        .unwrap_or_else(|| "NONE".into());
    let case: fn(&str) -> String = match action.as_str() {
        "NONE" => |s| s.to_string(),
        "LOWER" => str::to_lowercase,
        "UPPER" => str::to_uppercase,
        a => {
            return Err(OpError::Invalid(format!(
                "StringNormalizer: unknown case_change_action '{a}'"
            )))
        }
    };
    let sensitive = ctx.int("is_case_sensitive", 0) != 0;
    let stops: std::collections::HashSet<String> = ctx
        .strings("stopwords")
        .unwrap_or_default()
        .into_iter()
        .map(|s| if sensitive { s } else { s.to_lowercase() })
        .collect();
    let mut kept: Vec<String> = x
        .iter()
        .filter(|s| {
            stops.is_empty()
                || if sensitive {
                    !stops.contains(s.as_str())
                } else {
                    !stops.contains(&s.to_lowercase())
                }
        })
        .map(|s| case(s))
        .collect();
    if kept.is_empty() {
        kept.push(String::new());
    }
    let n = kept.len();
    let shape: &[usize] = if two_d { &[1, n] } else { &[n] };
    one(TensorValue::Str(shaped(shape, kept)?))
}

// ---------------------------------------------------------------------------
// StringConcat
// ---------------------------------------------------------------------------

fn string_concat(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let a = strings(ctx.input(inputs, 0)?, "StringConcat X")?;
    let b = strings(ctx.input(inputs, 1)?, "StringConcat Y")?;
    one(TensorValue::Str(zip2(a, b, |p, q| {
        let mut s = String::with_capacity(p.len() + q.len());
        s.push_str(p);
        s.push_str(q);
        s
    })?))
}

// ---------------------------------------------------------------------------
// StringSplit
// ---------------------------------------------------------------------------

/// Python's `str.split(None, maxsplit)`: runs of whitespace separate, leading
/// whitespace is dropped; after `maxsplit` splits the rest is one piece.
fn split_whitespace(s: &str, maxsplit: Option<usize>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if maxsplit == Some(out.len()) {
            out.push(rest);
            break;
        }
        match rest.find(char::is_whitespace) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = rest[i..].trim_start();
            }
            None => {
                out.push(rest);
                break;
            }
        }
    }
    out
}

fn string_split(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = strings(ctx.input(inputs, 0)?, "StringSplit input")?;
    let delim = ctx.string("delimiter").filter(|d| !d.is_empty());
    let maxsplit = ctx
        .int_opt("maxsplit")
        .and_then(|m| usize::try_from(m).ok());
    let pieces: Vec<Vec<&str>> = x
        .iter()
        .map(|s| match (&delim, maxsplit) {
            (Some(d), Some(m)) => s.splitn(m.saturating_add(1), d.as_str()).collect(),
            (Some(d), None) => s.split(d.as_str()).collect(),
            (None, m) => split_whitespace(s, m),
        })
        .collect();
    let width = pieces.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(pieces.len() * width);
    let mut lens = Vec::with_capacity(pieces.len());
    for p in &pieces {
        lens.push(p.len() as i64);
        out.extend(p.iter().map(|s| s.to_string()));
        out.extend(std::iter::repeat_n(String::new(), width - p.len()));
    }
    let mut shape = x.shape().to_vec();
    let lens = shaped(&shape, lens)?;
    shape.push(width);
    Ok(vec![
        RtValue::Tensor(TensorValue::Str(shaped(&shape, out)?)),
        RtValue::Tensor(TensorValue::I64(lens)),
    ])
}

// ---------------------------------------------------------------------------
// RegexFullMatch
// ---------------------------------------------------------------------------

/// Rewrites RE2's ASCII-only Perl classes and word boundaries for the `regex`
/// crate (whose are Unicode-aware).
fn re2_to_regex(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 16);
    let mut chars = p.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let rep = match e {
                    'd' => Some("[0-9]"),
                    'D' => Some("[^0-9]"),
                    'w' => Some("[0-9A-Za-z_]"),
                    'W' => Some("[^0-9A-Za-z_]"),
                    's' => Some("[\\t\\n\\f\\r ]"),
                    'S' => Some("[^\\t\\n\\f\\r ]"),
                    'b' if !in_class => Some("(?-u:\\b)"),
                    'B' if !in_class => Some("(?-u:\\B)"),
                    _ => None,
                };
                match rep {
                    Some(r) => out.push_str(r),
                    None => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A leading `^` and then a leading `]` are literal parts of the class.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // A POSIX class `[:name:]`: copy through its closing `:]`.
                out.push('[');
                let mut prev = '[';
                for n in chars.by_ref() {
                    out.push(n);
                    if prev == ':' && n == ']' {
                        break;
                    }
                    prev = n;
                }
            }
            '[' if in_class => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

fn regex_full_match(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = strings(ctx.input(inputs, 0)?, "RegexFullMatch input")?;
    let pattern = ctx
        .string("pattern")
        .ok_or_else(|| OpError::Invalid("RegexFullMatch needs a pattern".into()))?;
    let full = format!("\\A(?:{})\\z", re2_to_regex(&pattern));
    let re = regex::Regex::new(&full)
        .map_err(|e| OpError::Invalid(format!("RegexFullMatch: bad pattern '{pattern}': {e}")))?;
    one(TensorValue::Bool(x.map(|s| re.is_match(s))))
}

// ---------------------------------------------------------------------------
// TfIdfVectorizer
// ---------------------------------------------------------------------------

/// A trie of n-grams: node 0 is the root; `out` is the output index of the
/// n-gram ending at a node, when it is one that is counted.
struct Trie<K> {
    children: Vec<HashMap<K, usize>>,
    out: Vec<Option<usize>>,
}

impl<K: Hash + Eq + Clone> Trie<K> {
    fn new() -> Self {
        Trie {
            children: vec![HashMap::new()],
            out: vec![None],
        }
    }
    fn child(&self, node: usize, k: &K) -> Option<usize> {
        self.children[node].get(k).copied()
    }
    fn insert(&mut self, gram: &[K], out: usize) {
        let mut node = 0;
        for k in gram {
            node = match self.children[node].get(k) {
                Some(&n) => n,
                None => {
                    let n = self.children.len();
                    self.children.push(HashMap::new());
                    self.out.push(None);
                    self.children[node].insert(k.clone(), n);
                    n
                }
            };
        }
        self.out[node] = Some(out);
    }
}

struct TfIdf {
    min_gram: usize,
    max_gram: usize,
    max_skip: usize,
    out_size: usize,
    mode: String,
    weights: Vec<f32>,
}

/// Builds the trie of the counted n-gram sizes from the pool.
fn build_trie<K: Hash + Eq + Clone>(
    pool: &[K],
    counts: &[i64],
    indexes: &[usize],
    t: &TfIdf,
) -> Result<Trie<K>, OpError> {
    let mut trie = Trie::new();
    let mut gram_no = 0usize;
    for (i, &start) in counts.iter().enumerate() {
        let size = i + 1;
        let end = counts.get(i + 1).copied().unwrap_or(pool.len() as i64);
        let (start, end) = match (usize::try_from(start), usize::try_from(end)) {
            (Ok(s), Ok(e)) if s <= e && e <= pool.len() => (s, e),
            _ => {
                return Err(OpError::Invalid(format!(
                    "TfIdfVectorizer: bad ngram_counts {counts:?} for a pool of {}",
                    pool.len()
                )))
            }
        };
        let grams = (end - start) / size;
        if size >= t.min_gram && size <= t.max_gram {
            for g in 0..grams {
                let out = *indexes.get(gram_no + g).ok_or_else(|| {
                    OpError::Invalid("TfIdfVectorizer: fewer ngram_indexes than n-grams".into())
                })?;
                let at = start + g * size;
                trie.insert(&pool[at..at + size], out);
            }
        }
        gram_no += grams;
    }
    Ok(trie)
}

/// Counts the n-grams of each row of `x` (`rows` rows of `cols` items).
fn count_grams<K: Hash + Eq + Clone>(
    x: &[K],
    rows: usize,
    cols: usize,
    trie: &Trie<K>,
    t: &TfIdf,
) -> Vec<u64> {
    let mut freq = vec![0u64; rows * t.out_size];
    if trie.children[0].is_empty() {
        return freq;
    }
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let counts = &mut freq[r * t.out_size..(r + 1) * t.out_size];
        let mut min_size = t.min_gram.max(1);
        // Skips beyond the row length can match nothing longer than a unigram.
        for skip in 1..=t.max_skip.saturating_add(1).min(cols.max(1)) {
            for start in 0..cols {
                if start + skip * (min_size - 1) >= cols {
                    break;
                }
                let mut node = 0;
                let mut item = start;
                let mut size = 1;
                while size <= t.max_gram && item < cols {
                    let Some(next) = trie.child(node, &row[item]) else {
                        break;
                    };
                    if size >= min_size {
                        if let Some(o) = trie.out[next] {
                            counts[o] += 1;
                        }
                    }
                    node = next;
                    size += 1;
                    item += skip;
                }
            }
            // Unigrams do not depend on the skip: count them only once.
            if min_size == 1 {
                min_size = 2;
                if min_size > t.max_gram {
                    break;
                }
            }
        }
    }
    freq
}

fn tfidf_vectorizer(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (rows, cols, batched) = match *x.shape() {
        [] => (1, 1, false),
        [c] => (1, c, false),
        [b, c] => (b, c, true),
        ref s => {
            return Err(OpError::Invalid(format!(
                "TfIdfVectorizer input must be [C] or [B, C], got {s:?}"
            )))
        }
    };
    let attr_usize = |name: &str| -> Result<usize, OpError> {
        let v = ctx
            .int_opt(name)
            .ok_or_else(|| OpError::Invalid(format!("TfIdfVectorizer needs {name}")))?;
        usize::try_from(v)
            .map_err(|_| OpError::Invalid(format!("TfIdfVectorizer: {name} must be >= 0")))
    };
    let mode = ctx
        .string("mode")
        .ok_or_else(|| OpError::Invalid("TfIdfVectorizer needs mode".into()))?;
    if !matches!(mode.as_str(), "TF" | "IDF" | "TFIDF") {
        return Err(OpError::Invalid(format!(
            "TfIdfVectorizer: unknown mode '{mode}'"
        )));
    }
    let indexes: Vec<usize> = ctx
        .ints("ngram_indexes")
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            usize::try_from(i)
                .map_err(|_| OpError::Invalid(format!("TfIdfVectorizer: ngram index {i} < 0")))
        })
        .collect::<Result<_, _>>()?;
    let counts = ctx.ints("ngram_counts").unwrap_or_default();
    let t = TfIdf {
        min_gram: attr_usize("min_gram_length")?,
        max_gram: attr_usize("max_gram_length")?,
        max_skip: attr_usize("max_skip_count")?,
        out_size: indexes.iter().max().map_or(0, |m| m + 1),
        mode,
        weights: ctx.floats("weights").unwrap_or_default(),
    };
    if t.min_gram < 1 || t.min_gram > t.max_gram {
        return Err(OpError::Invalid(format!(
            "TfIdfVectorizer: gram lengths {}..={} are invalid",
            t.min_gram, t.max_gram
        )));
    }
    let freq = match x {
        TensorValue::Str(a) => {
            let pool: Vec<String> = ctx.strings("pool_strings").ok_or_else(|| {
                OpError::Invalid("TfIdfVectorizer: string input needs pool_strings".into())
            })?;
            let trie = build_trie(&pool, &counts, &indexes, &t)?;
            let data: Vec<String> = a.iter().cloned().collect();
            count_grams(&data, rows, cols, &trie, &t)
        }
        x => {
            let data = x.to_i64_vec().ok_or_else(|| {
                OpError::Invalid(format!(
                    "TfIdfVectorizer input must be string or integer, not {}",
                    x.dtype()
                ))
            })?;
            let pool = ctx.ints("pool_int64s").ok_or_else(|| {
                OpError::Invalid("TfIdfVectorizer: integer input needs pool_int64s".into())
            })?;
            let trie = build_trie(&pool, &counts, &indexes, &t)?;
            count_grams(&data, rows, cols, &trie, &t)
        }
    };
    let w = &t.weights;
    let weight = |i: usize| w.get(i % t.out_size.max(1)).copied().unwrap_or(1.0);
    let out: Vec<f32> = freq
        .iter()
        .enumerate()
        .map(|(i, &f)| match t.mode.as_str() {
            "TF" => f as f32,
            "IDF" if f > 0 => weight(i),
            "IDF" => 0.0,
            _ => weight(i) * f as f32,
        })
        .collect();
    let shape: Vec<usize> = if batched {
        vec![rows, t.out_size]
    } else {
        vec![t.out_size]
    };
    one(TensorValue::F32(shaped(&shape, out)?))
}

// ---------------------------------------------------------------------------
// LabelEncoder (ai.onnx.ml)
// ---------------------------------------------------------------------------

/// A lookup key: strings, integers, or floats by canonical bits.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    S(String),
    I(i64),
    F(u64),
}

fn float_key(v: f64) -> Key {
    if v.is_nan() {
        Key::F(f64::NAN.to_bits())
    } else if v == 0.0 {
        Key::F(0)
    } else {
        Key::F(v.to_bits())
    }
}

/// The elements of a tensor as keys.
fn keys_of(t: &TensorValue) -> Result<Vec<Key>, OpError> {
    Ok(match t {
        TensorValue::Str(a) => a.iter().map(|s| Key::S(s.clone())).collect(),
        TensorValue::F32(_) | TensorValue::F64(_) | TensorValue::F16(_) | TensorValue::BF16(_) => t
            .to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(float_key)
            .collect(),
        t => t
            .to_i64_vec()
            .ok_or_else(|| OpError::Invalid(format!("LabelEncoder: bad key type {}", t.dtype())))?
            .into_iter()
            .map(Key::I)
            .collect(),
    })
}

fn tensor_attr(ctx: &OpCtx, name: &str) -> Result<Option<TensorValue>, OpError> {
    ctx.tensor(name)
        .map(|t| {
            TensorValue::from_tensor(t)
                .map_err(|e| OpError::Invalid(format!("LabelEncoder {name}: {e}")))
        })
        .transpose()
}

/// Selects `vals[i]` (or `def`) for each index.
fn pick<T: Clone>(
    vals: &ArrayD<T>,
    def: &ArrayD<T>,
    idx: &[Option<usize>],
    shape: &[usize],
) -> Result<ArrayD<T>, OpError> {
    let vals: Vec<&T> = vals.iter().collect();
    let def = def
        .iter()
        .next()
        .ok_or_else(|| OpError::Invalid("LabelEncoder: empty default".into()))?;
    let out = idx
        .iter()
        .map(|i| i.and_then(|i| vals.get(i).copied()).unwrap_or(def).clone())
        .collect();
    shaped(shape, out)
}

fn label_encoder(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let keys: Vec<Key> = if let Some(k) = ctx.strings("keys_strings") {
        k.into_iter().map(Key::S).collect()
    } else if let Some(k) = ctx.ints("keys_int64s") {
        k.into_iter().map(Key::I).collect()
    } else if let Some(k) = ctx.floats("keys_floats") {
        k.into_iter().map(|v| float_key(v as f64)).collect()
    } else if let Some(k) = tensor_attr(ctx, "keys_tensor")? {
        keys_of(&k)?
    } else {
        return Err(OpError::Invalid("LabelEncoder needs keys".into()));
    };
    let (values, default) = if let Some(v) = ctx.strings("values_strings") {
        let n = v.len();
        let d = ctx
            .string("default_string")
            .unwrap_or_else(|| "_Unused".into());
        (
            TensorValue::Str(shaped(&[n], v)?),
            TensorValue::Str(shaped(&[1], vec![d])?),
        )
    } else if let Some(v) = ctx.ints("values_int64s") {
        let d = ctx.int("default_int64", -1);
        (
            TensorValue::I64(shaped(&[v.len()], v)?),
            TensorValue::I64(shaped(&[1], vec![d])?),
        )
    } else if let Some(v) = ctx.floats("values_floats") {
        let d = ctx.float("default_float", -0.0);
        (
            TensorValue::F32(shaped(&[v.len()], v)?),
            TensorValue::F32(shaped(&[1], vec![d])?),
        )
    } else if let Some(v) = tensor_attr(ctx, "values_tensor")? {
        let d = match tensor_attr(ctx, "default_tensor")? {
            Some(d) => cast_tensor(&d, v.dtype())?,
            None => match v.dtype() {
                DType::Str => TensorValue::Str(shaped(&[1], vec!["_Unused".to_string()])?),
                DType::F32 | DType::F64 | DType::F16 | DType::BF16 => {
                    cast_tensor(&TensorValue::F64(shaped(&[1], vec![-0.0])?), v.dtype())?
                }
                d => cast_tensor(&TensorValue::I64(shaped(&[1], vec![-1])?), d)?,
            },
        };
        (v, d)
    } else {
        return Err(OpError::Invalid("LabelEncoder needs values".into()));
    };
    if keys.len() != values.len() {
        return Err(OpError::Invalid(format!(
            "LabelEncoder: {} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    let xk = keys_of(x)?;
    if let (Some(a), Some(b)) = (keys.first(), xk.first()) {
        if std::mem::discriminant(a) != std::mem::discriminant(b) {
            return Err(OpError::Invalid(format!(
                "LabelEncoder: keys do not match the input type {}",
                x.dtype()
            )));
        }
    }
    let map: HashMap<&Key, usize> = keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let idx: Vec<Option<usize>> = xk.iter().map(|k| map.get(k).copied()).collect();
    let shape = x.shape();
    use TensorValue as T;
    let out = match (&values, &default) {
        (T::Str(v), T::Str(d)) => T::Str(pick(v, d, &idx, shape)?),
        (T::F32(v), T::F32(d)) => T::F32(pick(v, d, &idx, shape)?),
        (T::F64(v), T::F64(d)) => T::F64(pick(v, d, &idx, shape)?),
        (T::F16(v), T::F16(d)) => T::F16(pick(v, d, &idx, shape)?),
        (T::BF16(v), T::BF16(d)) => T::BF16(pick(v, d, &idx, shape)?),
        (T::I8(v), T::I8(d)) => T::I8(pick(v, d, &idx, shape)?),
        (T::I16(v), T::I16(d)) => T::I16(pick(v, d, &idx, shape)?),
        (T::I32(v), T::I32(d)) => T::I32(pick(v, d, &idx, shape)?),
        (T::I64(v), T::I64(d)) => T::I64(pick(v, d, &idx, shape)?),
        (T::U8(v), T::U8(d)) => T::U8(pick(v, d, &idx, shape)?),
        (T::U16(v), T::U16(d)) => T::U16(pick(v, d, &idx, shape)?),
        (T::U32(v), T::U32(d)) => T::U32(pick(v, d, &idx, shape)?),
        (T::U64(v), T::U64(d)) => T::U64(pick(v, d, &idx, shape)?),
        (T::Bool(v), T::Bool(d)) => T::Bool(pick(v, d, &idx, shape)?),
        (v, d) => {
            return Err(OpError::Invalid(format!(
                "LabelEncoder: default type {} does not match values {}",
                d.dtype(),
                v.dtype()
            )))
        }
    };
    one(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::attr::AttrValue;

    #[test]
    fn whitespace_split_matches_python() {
        assert_eq!(split_whitespace("  a  b c ", None), vec!["a", "b", "c"]);
        assert_eq!(split_whitespace("a b  c  ", Some(1)), vec!["a", "b  c  "]);
        assert_eq!(split_whitespace("   ", None), Vec::<&str>::new());
        assert_eq!(split_whitespace(" a b", Some(0)), vec!["a b"]);
    }

    #[test]
    fn re2_classes_become_ascii() {
        assert_eq!(re2_to_regex(r"\w+\b"), r"[0-9A-Za-z_]+(?-u:\b)");
        assert_eq!(re2_to_regex(r"[\w.\-]"), r"[[0-9A-Za-z_].\-]");
        assert_eq!(re2_to_regex(r"[]a][[:alpha:]x]"), r"[\]a][[:alpha:]x]");
        let re = regex::Regex::new(&format!("\\A(?:{})\\z", re2_to_regex(r"\w+"))).unwrap();
        assert!(re.is_match("abc_1"));
        assert!(!re.is_match("é"));
    }

    fn node(op: &str, attrs: Vec<(&str, AttrValue)>) -> crate::ir::graph::Node {
        crate::ir::graph::Node::new(
            op,
            "",
            attrs
                .into_iter()
                .map(|(k, v)| crate::ir::attr::Attr::new(k, v))
                .collect(),
        )
    }

    fn strs(shape: &[usize], v: &[&str]) -> TensorValue {
        TensorValue::Str(shaped(shape, v.iter().map(|s| s.to_string()).collect()).unwrap())
    }

    #[test]
    fn split_with_delimiter_and_maxsplit() {
        let n = node(
            "StringSplit",
            vec![
                (
                    "delimiter",
                    AttrValue::String(bytes::Bytes::from_static(b",")),
                ),
                ("maxsplit", AttrValue::Int(1)),
            ],
        );
        let ctx = OpCtx {
            node: &n,
            opset: 20,
        };
        let out = string_split(&ctx, &[Some(strs(&[2], &["a,b,c", ""]).into())]).unwrap();
        assert_eq!(
            out[0],
            RtValue::Tensor(strs(&[2, 2], &["a", "b,c", "", ""]))
        );
        assert_eq!(
            out[1],
            RtValue::Tensor(TensorValue::from_i64(&[2], vec![2, 1]))
        );
    }

    #[test]
    fn label_encoder_float_keys_match_nan() {
        let n = node(
            "LabelEncoder",
            vec![
                ("keys_floats", AttrValue::Floats(vec![f32::NAN, 1.5])),
                (
                    "values_strings",
                    AttrValue::Strings(vec!["nan".into(), "x".into()]),
                ),
            ],
        );
        let ctx = OpCtx { node: &n, opset: 2 };
        let x = TensorValue::from_f32(&[3], vec![1.5, f32::NAN, 2.0]);
        let out = label_encoder(&ctx, &[Some(x.into())]).unwrap();
        assert_eq!(
            out[0],
            RtValue::Tensor(strs(&[3], &["x", "nan", "_Unused"]))
        );
    }

    #[test]
    fn tfidf_idf_weights_by_output_index() {
        let n = node(
            "TfIdfVectorizer",
            vec![
                ("min_gram_length", AttrValue::Int(1)),
                ("max_gram_length", AttrValue::Int(1)),
                ("max_skip_count", AttrValue::Int(0)),
                (
                    "mode",
                    AttrValue::String(bytes::Bytes::from_static(b"TFIDF")),
                ),
                ("ngram_counts", AttrValue::Ints(vec![0])),
                ("ngram_indexes", AttrValue::Ints(vec![1, 0])),
                (
                    "pool_strings",
                    AttrValue::Strings(vec!["a".into(), "b".into()]),
                ),
                ("weights", AttrValue::Floats(vec![0.5, 2.0])),
            ],
        );
        let ctx = OpCtx { node: &n, opset: 9 };
        let out = tfidf_vectorizer(
            &ctx,
            &[Some(strs(&[2, 3], &["a", "a", "b", "c", "b", "b"]).into())],
        )
        .unwrap();
        // Row 0: "a"→index 1 twice, "b"→index 0 once; row 1: "b" twice.
        assert_eq!(
            out[0],
            RtValue::Tensor(TensorValue::from_f32(&[2, 2], vec![0.5, 4.0, 1.0, 0.0]))
        );
    }
}
