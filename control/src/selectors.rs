//! Label and field selectors with Kubernetes semantics (apimachinery `labels.Parse`,
//! `metav1.LabelSelectorAsSelector`, `fields.ParseSelector`). Error texts match
//! apimachinery's because the API server returns them to users in 400 responses.

use crate::obj;
use crate::validation::names::{is_qualified_name, is_valid_label_value};
use crate::validation::{go_quote, FieldError};
use serde_json::{json, Map, Value};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SelectorError {
    /// A label selector string or object that does not parse; the text is apimachinery's.
    #[error("{0}")]
    Label(String),
    /// A field selector string that does not parse; the text is apimachinery's.
    #[error("{0}")]
    Field(String),
    /// A field selector names a field the resource does not index.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    /// Sorted and de-duplicated, like apimachinery's `sets.String.List()`.
    pub values: Vec<String>,
}

impl Requirement {
    /// `labels.NewRequirement`: validates the key, values and arity.
    pub fn new(key: &str, op: Operator, mut values: Vec<String>) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        for msg in is_qualified_name(key) {
            errs.push(FieldError::invalid("key", json!(key), msg));
        }
        let arity = match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(msg) = arity {
            errs.push(FieldError::invalid("values", json!(values), msg));
        }
        if matches!(op, Operator::GreaterThan | Operator::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        format!("values[{i}]"),
                        json!(v),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            for msg in is_valid_label_value(v) {
                errs.push(FieldError::invalid(
                    format!("values[{i}][{key}]"),
                    json!(v),
                    msg,
                ));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        values.sort();
        values.dedup();
        Ok(Self {
            key: key.to_string(),
            op,
            values,
        })
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        // Borrowed when the label is a string (always, for valid objects): selectors run
        // in the scheduler's inner loops.
        let val = labels.and_then(|l| l.get(&self.key)).map(|v| match v {
            Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(obj::scalar_string(other)),
        });
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                val.is_some_and(|v| has(&v))
            }
            Operator::NotIn | Operator::NotEquals => val.is_none_or(|v| !has(&v)),
            Operator::Exists => val.is_some(),
            Operator::DoesNotExist => val.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(Ok(l)), Some(Ok(r))) = (
                    val.map(|v| v.parse::<i64>()),
                    self.values.first().map(|v| v.parse::<i64>()),
                ) else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    l > r
                } else {
                    l < r
                }
            }
        }
    }
}

/// A parsed label selector: the AND of its requirements.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// A null `metav1.LabelSelector` selects nothing, unlike an empty one.
    nothing: bool,
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter; `""` selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s).parse().map_err(SelectorError::Label)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    /// `null` selects nothing and `{}` everything, as `LabelSelectorAsSelector`.
    pub fn from_json(sel: &Value) -> Result<Self, SelectorError> {
        if sel.is_null() {
            return Ok(Self {
                requirements: Vec::new(),
                nothing: true,
            });
        }
        let mut requirements = Vec::new();
        for (k, v) in obj::object(sel, &["matchLabels"]).into_iter().flatten() {
            let r = Requirement::new(k, Operator::Equals, vec![obj::scalar_string(v)])
                .map_err(|e| SelectorError::Label(crate::validation::aggregate_message(&e)))?;
            requirements.push(r);
        }
        for expr in obj::array(sel, &["matchExpressions"]) {
            let op = match obj::str_or_empty(expr, &["operator"]) {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Label(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )))
                }
            };
            let values = obj::array(expr, &["values"])
                .iter()
                .map(obj::scalar_string)
                .collect();
            let r = Requirement::new(obj::str_or_empty(expr, &["key"]), op, values)
                .map_err(|e| SelectorError::Label(crate::validation::aggregate_message(&e)))?;
            requirements.push(r);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Narrows the selector by one more requirement (a spread constraint's
    /// `matchLabelKeys`).
    pub fn add(&mut self, r: Requirement) {
        self.requirements.push(r);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when it selects everything.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl std::fmt::Display for Requirement {
    /// `Requirement.String()`: the selector syntax, values sorted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.op == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, paren) = match self.op {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if paren {
            write!(f, "({})", self.values.join(","))
        } else {
            f.write_str(&self.values.join(","))
        }
    }
}

impl std::fmt::Display for LabelSelector {
    /// `Selector.String()`: requirements sorted by key, comma-joined; `""` for everything
    /// and for nothing, as in apimachinery.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
    Error,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits the selector into tokens the way apimachinery's `Lexer` does (byte-wise; every
/// non-special, non-space run is an identifier or keyword).
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_ws(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Token::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            // Longest run of special bytes that still forms a known operator.
            let start = pos;
            let mut last: Option<(Token, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                let cand = &s[start..=pos];
                if let Some(t) = keyword(cand) {
                    last = Some((t, pos + 1));
                } else if last.is_some() {
                    break;
                }
                pos += 1;
            }
            match last {
                Some((t, end)) => {
                    out.push((t, s[start..end].to_string()));
                    pos = end;
                }
                None => out.push((
                    Token::Error,
                    format!("error expected: keyword found '{}'", &s[start..pos]),
                )),
            }
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_ws(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            out.push((keyword(lit).unwrap_or(Token::Identifier), lit.to_string()));
        }
    }
}

struct Parser {
    items: Vec<(Token, String)>,
    pos: usize,
}

/// Whether `in`/`notin` read as plain identifiers (they do in value position).
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

impl Parser {
    fn new(s: &str) -> Self {
        Self {
            items: lex(s),
            pos: 0,
        }
    }

    fn item(&self, i: usize, ctx: Ctx) -> (Token, String) {
        let (t, l) = self
            .items
            .get(i)
            .cloned()
            .unwrap_or((Token::End, String::new()));
        let t = match t {
            Token::In | Token::NotIn if ctx == Ctx::Values => Token::Identifier,
            t => t,
        };
        (t, l)
    }

    fn lookahead(&self, ctx: Ctx) -> (Token, String) {
        self.item(self.pos, ctx)
    }

    fn consume(&mut self, ctx: Ctx) -> (Token, String) {
        let r = self.item(self.pos, ctx);
        if self.pos < self.items.len() {
            self.pos += 1;
        }
        r
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Token::End => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new()).map_err(|e| nil_path_aggregate(&e));
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values).map_err(|e| nil_path_aggregate(&e))
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        let mut op = None;
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        if let Some(msg) = is_qualified_name(&lit).into_iter().next() {
            // apimachinery builds this error with a nil field path, which prints as "<nil>".
            let e = FieldError::invalid("<nil>", json!(lit), msg);
            return Err(e.to_string());
        }
        let (t, _) = self.lookahead(Ctx::Values);
        if (t == Token::End || t == Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let s = self.parse_identifiers_list()?;
                let (t, _) = self.consume(Ctx::Values);
                if t != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Token::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut s: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Token::Identifier => {
                    s.push(lit);
                    let (t2, l2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // "(,", ",)" and ",," all contribute the empty value.
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    let (t2, _) = self.lookahead(Ctx::Values);
                    if t2 == Token::ClosedPar {
                        s.push(String::new());
                        return Ok(s);
                    }
                    if t2 == Token::Comma {
                        s.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Token::End || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Token::Identifier {
            return Ok(vec![lit]);
        }
        Err(format!("found '{lit}', expected: identifier"))
    }
}

/// `NewRequirement` errors as an aggregate (apimachinery's paths are relative here).
fn nil_path_aggregate(errs: &[FieldError]) -> String {
    crate::validation::aggregate_message(errs)
}

/// `==`/`=` or `!=` in a field selector term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

/// A parsed field selector: the AND of its terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter; `""` selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(rhs).map_err(SelectorError::Field)?;
            terms.push(FieldTerm {
                field: lhs.to_string(),
                op,
                value,
            });
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// Errors with Kubernetes' `field label not supported: <f>` for the first field the
    /// resource does not index.
    pub fn check_supported(&self, resource: &str) -> Result<(), SelectorError> {
        for t in &self.terms {
            if field_path(resource, &t.field).is_none() {
                return Err(SelectorError::FieldNotSupported(t.field.clone()));
            }
        }
        Ok(())
    }

    /// Matches the object; unsupported fields compare as the empty string (call
    /// `check_supported` first to reject them).
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let v = field_value(obj, &t.field);
            match t.op {
                FieldOp::Equals => v == t.value,
                FieldOp::NotEquals => v != t.value,
            }
        })
    }
}

/// Splits on unescaped commas; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The first `!=`, `==` or `=` splits the term; the left side has no escaping.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, fop) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], fop, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    ))
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

/// How a supported field selector label reads the object.
enum FieldSource {
    Path(&'static [&'static str]),
    /// A boolean field; absent reads as "false" like Go's zero value.
    Bool(&'static [&'static str]),
    /// `status.podIP`: the first of `status.podIPs`, else `status.podIP`.
    PodIp,
}

/// The fields each resource indexes (its `*ToSelectableFields`), beyond the metadata ones.
fn field_path(resource: &str, field: &str) -> Option<FieldSource> {
    use FieldSource::*;
    Some(match (resource, field) {
        (_, "metadata.name") => Path(&["metadata", "name"]),
        (_, "metadata.namespace") => Path(&["metadata", "namespace"]),
        ("pods", "spec.nodeName") => Path(&["spec", "nodeName"]),
        ("pods", "spec.restartPolicy") => Path(&["spec", "restartPolicy"]),
        ("pods", "spec.schedulerName") => Path(&["spec", "schedulerName"]),
        ("pods", "spec.serviceAccountName") => Path(&["spec", "serviceAccountName"]),
        ("pods", "spec.hostNetwork") => Bool(&["spec", "hostNetwork"]),
        ("pods", "status.phase") => Path(&["status", "phase"]),
        ("pods", "status.podIP") => PodIp,
        ("pods", "status.nominatedNodeName") => Path(&["status", "nominatedNodeName"]),
        ("events", "involvedObject.kind") => Path(&["involvedObject", "kind"]),
        ("events", "involvedObject.namespace") => Path(&["involvedObject", "namespace"]),
        ("events", "involvedObject.name") => Path(&["involvedObject", "name"]),
        ("events", "involvedObject.uid") => Path(&["involvedObject", "uid"]),
        ("events", "involvedObject.apiVersion") => Path(&["involvedObject", "apiVersion"]),
        ("events", "involvedObject.resourceVersion") => {
            Path(&["involvedObject", "resourceVersion"])
        }
        ("events", "involvedObject.fieldPath") => Path(&["involvedObject", "fieldPath"]),
        ("events", "reason") => Path(&["reason"]),
        ("events", "reportingComponent") => Path(&["reportingComponent"]),
        ("events", "source") => Path(&["source", "component"]),
        ("events", "type") => Path(&["type"]),
        ("secrets", "type") => Path(&["type"]),
        ("namespaces", "status.phase") => Path(&["status", "phase"]),
        ("nodes", "spec.unschedulable") => Bool(&["spec", "unschedulable"]),
        ("replicasets" | "replicationcontrollers", "status.replicas") => {
            Path(&["status", "replicas"])
        }
        ("jobs", "status.successful") => Path(&["status", "succeeded"]),
        _ => return None,
    })
}

fn field_value(obj: &Value, field: &str) -> String {
    // The resource is unknown here; any resource's mapping of the label is the same path.
    let source = ["pods", "events", "secrets", "nodes", "replicasets", "jobs"]
        .iter()
        .find_map(|r| field_path(r, field));
    match source {
        Some(FieldSource::Path(p)) => obj::get(obj, p).map(obj::scalar_string).unwrap_or_default(),
        Some(FieldSource::Bool(p)) => obj::bool_or_false(obj, p).to_string(),
        Some(FieldSource::PodIp) => obj::array(obj, &["status", "podIPs"])
            .first()
            .and_then(|ip| ip.get("ip"))
            .or_else(|| obj::get(obj, &["status", "podIP"]))
            .map(obj::scalar_string)
            .unwrap_or_default(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn label_selector_matching_table() {
        let l = labels(json!({"a": "b", "c": "d", "e": "x", "n": "5"}));
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("a=b", true),
            ("a==b", true),
            ("a=c", false),
            ("a!=c", true),
            ("a!=b", false),
            ("zz!=b", true),
            ("e in (x,y)", true),
            ("e in (y)", false),
            ("e notin (z)", true),
            ("zz notin (z)", true),
            ("a", true),
            ("zz", false),
            ("!zz", true),
            ("!a", false),
            ("a=b,c=d,e in (x,y),f notin (z),g!=h,!h", true),
            (" a = b , c=d ", true),
            ("n>4", true),
            ("n<4", false),
            ("a>4", false),
            ("in in (in)", false),
        ];
        for (s, want) in cases {
            let sel = LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sel.matches(Some(&l)), *want, "{s}");
        }
        assert!(LabelSelector::parse("")
            .map(|s| s.is_empty())
            .unwrap_or(false));
        assert!(LabelSelector::parse("a").is_ok_and(|s| s.matches(Some(&labels(json!({"a": ""}))))));
        assert!(LabelSelector::parse("a!=b").is_ok_and(|s| s.matches(None)));
    }

    #[test]
    fn label_selector_parse_values() {
        let sel = LabelSelector::parse("x in (foo,,baz),y,z notin ()").unwrap_or_default();
        let r = sel.requirements();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].values, vec!["", "baz", "foo"]);
        assert_eq!(r[1].op, Operator::Exists);
        assert_eq!(r[2].values, vec![""]);
        let sel = LabelSelector::parse("a=").unwrap_or_default();
        assert_eq!(sel.requirements()[0].values, vec![""]);
    }

    #[test]
    fn label_selector_errors_match_apimachinery() {
        let cases: &[(&str, &str)] = &[
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("a,", "found '', expected: identifier after ','"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("x in a", "unable to parse requirement: found 'a' expected: '('"),
            ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
            ("x=a=b", "found '=', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("a=b!", "found '!', expected: ',' or 'end of string'"),
            ("x in ()a", "found 'a', expected: ',' or 'end of string'"),
            ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ];
        for (s, want) in cases {
            assert_eq!(
                LabelSelector::parse(s)
                    .err()
                    .map(|e| e.to_string())
                    .as_deref(),
                Some(*want),
                "{s}"
            );
        }
        let e = LabelSelector::parse("a_-")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("unable to parse requirement: <nil>: Invalid value: \"a_-\": name part must consist of"), "{e}");
        let e = LabelSelector::parse("a=b_")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"b_\": a valid label must be"), "{e}");
    }

    #[test]
    fn label_selector_to_string() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("b=1,a", "a,b=1"),
            (
                "x in (c,a),!y,z notin (q),w!=v,n>3",
                "n>3,w!=v,x in (a,c),!y,z notin (q)",
            ),
            ("a==b", "a==b"),
        ];
        for (input, want) in cases {
            assert_eq!(
                LabelSelector::parse(input)
                    .map(|s| s.to_string())
                    .as_deref(),
                Ok(*want),
                "{input}"
            );
        }
    }

    #[test]
    fn label_selector_from_json() {
        let l = labels(json!({"app": "web", "tier": "fe"}));
        let cases: Vec<(Value, bool)> = vec![
            (json!({}), true),
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                true,
            ),
            (Value::Null, false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::from_json(&sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(Some(&l)), want, "{sel}");
        }
        assert_eq!(
            LabelSelector::from_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
            )
            .err()
            .map(|e| e.to_string()),
            Some("\"Foo\" is not a valid label selector operator".to_string())
        );
        assert!(LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
        )
        .is_err());
    }

    #[test]
    fn field_selector_table() {
        let pod = json!({
            "metadata": {"name": "p1", "namespace": "ns"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}
        });
        let unbound = json!({"metadata": {"name": "p2", "namespace": "ns"}, "spec": {}});
        let cases: &[(&str, bool, bool)] = &[
            ("", true, true),
            ("metadata.name=p1", true, false),
            ("metadata.name==p1", true, false),
            ("metadata.name!=p1", false, true),
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=", true, false),
            ("spec.nodeName=n1,status.phase=Running", true, false),
            ("status.podIP=10.0.0.1", true, false),
            ("spec.hostNetwork=false", true, true),
            ("metadata.namespace=ns", true, true),
        ];
        for (s, p1, p2) in cases {
            let sel = FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(sel.check_supported("pods").is_ok(), "{s}");
            assert_eq!(sel.matches(&pod), *p1, "{s} on p1");
            assert_eq!(sel.matches(&unbound), *p2, "{s} on p2");
        }
    }

    #[test]
    fn field_selector_errors() {
        let cases: &[(&str, &str)] = &[
            ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(
                FieldSelector::parse(s)
                    .err()
                    .map(|e| e.to_string())
                    .as_deref(),
                Some(*want),
                "{s}"
            );
        }
        let sel = FieldSelector::parse("a=b\\,c").unwrap_or_default();
        assert_eq!(sel.terms()[0].value, "b,c");
        let sel = FieldSelector::parse("foo=bar").unwrap_or_default();
        assert_eq!(
            sel.check_supported("pods")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("field label not supported: foo")
        );
        let sel = FieldSelector::parse("spec.nodeName=x").unwrap_or_default();
        assert!(sel.check_supported("configmaps").is_err());
        assert!(
            FieldSelector::parse("type=Opaque").is_ok_and(|s| s.check_supported("secrets").is_ok())
        );
        assert!(FieldSelector::parse("spec.unschedulable=false")
            .is_ok_and(|s| s.check_supported("nodes").is_ok() && s.matches(&json!({}))));
    }

    #[test]
    fn event_field_selectors() {
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}, "type": "Normal", "reason": "Started"});
        let sel = FieldSelector::parse("involvedObject.kind=Pod,involvedObject.name=p,source=kubelet,type=Normal,reason=Started")
            .unwrap_or_default();
        assert!(sel.check_supported("events").is_ok());
        assert!(sel.matches(&ev));
    }
}
