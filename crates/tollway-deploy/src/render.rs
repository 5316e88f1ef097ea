//! A renderer for the subset of Go's `text/template` (with Helm's and
//! Sprig's functions) that `deploy/helm/tollway` uses.
//!
//! Supported:
//! - text with `{{ }}` actions, trim markers `{{-` / `-}}`, comments
//!   `{{/* */}}`;
//! - pipelines `a | f x | g`, parenthesized pipelines, field chains
//!   (`.Values.a.b`, `$.Release.Name`, `$v.x`, `(f x).y`), variables
//!   (`$x := ...`, `$x = ...`, with Go's block scoping), string (`"..."`,
//!   `` `...` ``), number, `true`/`false`/`nil` literals;
//! - `if` / `else if` / `else`, `range` (over lists and maps, with `$i, $v
//!   :=`), `with`, `define`, `template`, `end`;
//! - functions: Go's `and or not eq ne lt le gt ge len print printf`
//!   (`%s %v %d %q`); Helm's `include fail required toYaml toJson`; and
//!   Sprig's `quote squote default empty coalesce ternary toString int
//!   int64 float64 indent nindent trim trimSuffix trimPrefix trunc replace
//!   lower upper contains hasPrefix hasSuffix list has dict hasKey kindIs
//!   join`.
//!
//! Not supported (an error names them): `block`, `break`/`continue`,
//! `else with`, method calls, `lookup`, `tpl`, `.Files`, `.Capabilities`,
//! and every other function.
//!
//! Semantics follow Go's where they show in output: missing map keys are
//! nil (Helm's `missingkey=zero`) and print as nothing, a field of nil is
//! an error, `eq` of an int and a float is an error, `and`/`or` return an
//! operand and stop early, and floats print with `%v` (`1e+06`).

use std::collections::{BTreeMap, HashMap};

use crate::error::RenderError;
use crate::value::Value;
use crate::yaml::to_yaml;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action {
        line: usize,
        pipe: Pipeline,
    },
    If {
        line: usize,
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        line: usize,
        key: Option<String>,
        val: Option<String>,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        line: usize,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Call {
        line: usize,
        name: String,
        arg: Option<Pipeline>,
    },
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// `$x :=` (true) or `$x =` (false).
    decl: Option<(String, bool)>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.a.b` (empty: `.`).
    Field(Vec<String>),
    /// `$x.a.b` (`$` alone is the root).
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    Lit(Value),
    /// `(pipeline).a.b`.
    Sub(Box<Pipeline>, Vec<String>),
}

// ---------------------------------------------------------------- lexing

#[derive(Debug)]
enum Piece {
    Text(String),
    Action { line: usize, body: String },
}

fn lex(name: &str, src: &str) -> Result<Vec<Piece>, RenderError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("{{") else {
            let mut t = rest.to_string();
            if trim_next {
                t = t.trim_start().to_string();
            }
            pieces.push(Piece::Text(t));
            break;
        };
        let mut text = rest[..start].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        line += rest[..start].matches('\n').count();
        let after = &rest[start + 2..];
        let trim_prev = after.starts_with("- ")
            || after.starts_with("-\n")
            || after.starts_with("-\t")
            || after.starts_with("-\r");
        if trim_prev {
            text = text.trim_end().to_string();
        }
        pieces.push(Piece::Text(text));
        let inner = if trim_prev { &after[1..] } else { after };
        let end = find_close(inner).ok_or_else(|| RenderError::Parse {
            template: name.to_string(),
            line,
            message: "unclosed action (no `}}`)".to_string(),
        })?;
        let mut body = &inner[..end];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\n-") || body.ends_with("\t-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        let action_line = line;
        line += body.matches('\n').count();
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            pieces.push(Piece::Action {
                line: action_line,
                body: body.to_string(),
            });
        }
        rest = &inner[end + 2..];
    }
    Ok(pieces)
}

/// The offset of the `}}` closing an action, outside string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

// ------------------------------------------------------- action tokenizing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.a.b` (empty: `.`).
    Field(Vec<String>),
    /// `$x.a.b`.
    Var(String, Vec<String>),
    /// `.a.b` right after `)`.
    Attached(Vec<String>),
    Ident(String),
    Str(String),
    Num(String),
    Pipe,
    LParen,
    RParen,
    Comma,
    Declare,
    Assign,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '|' {
            out.push(Tok::Pipe);
            i += 1;
        } else if ch == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if ch == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if ch == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if ch == ':' && c.get(i + 1) == Some(&'=') {
            out.push(Tok::Declare);
            i += 2;
        } else if ch == '=' {
            out.push(Tok::Assign);
            i += 1;
        } else if ch == '.' || ch == '$' {
            let mut j = i;
            let mut var = None;
            if ch == '$' {
                j += 1;
                while j < c.len() && ident_char(c[j]) {
                    j += 1;
                }
                var = Some(c[i..j].iter().collect::<String>());
            }
            let mut fields = Vec::new();
            while j < c.len() && c[j] == '.' {
                let start = j + 1;
                let mut k = start;
                while k < c.len() && ident_char(c[k]) {
                    k += 1;
                }
                if k == start {
                    if var.is_some() || !fields.is_empty() {
                        return Err("a field name must follow `.`".to_string());
                    }
                    j = k;
                    break;
                }
                fields.push(c[start..k].iter().collect());
                j = k;
            }
            let attached = i > 0 && c[i - 1] == ')' && var.is_none();
            out.push(match var {
                Some(v) => Tok::Var(v, fields),
                None if attached => Tok::Attached(fields),
                None => Tok::Field(fields),
            });
            i = j;
        } else if ch == '"' {
            let mut j = i + 1;
            let mut v = String::new();
            loop {
                let Some(&d) = c.get(j) else {
                    return Err("unterminated string".to_string());
                };
                if d == '"' {
                    break;
                }
                if d == '\\' {
                    j += 1;
                    match c.get(j) {
                        Some('n') => v.push('\n'),
                        Some('t') => v.push('\t'),
                        Some('r') => v.push('\r'),
                        Some('\\') => v.push('\\'),
                        Some('"') => v.push('"'),
                        Some(o) => return Err(format!("unsupported escape \\{o}")),
                        None => return Err("unterminated string".to_string()),
                    }
                } else {
                    v.push(d);
                }
                j += 1;
            }
            out.push(Tok::Str(v));
            i = j + 1;
        } else if ch == '`' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '`' {
                j += 1;
            }
            if j >= c.len() {
                return Err("unterminated raw string".to_string());
            }
            out.push(Tok::Str(c[i + 1..j].iter().collect()));
            i = j + 1;
        } else if ch.is_ascii_digit()
            || ((ch == '-' || ch == '+') && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut j = i + 1;
            while j < c.len() && (c[j].is_ascii_alphanumeric() || c[j] == '.' || c[j] == '_') {
                j += 1;
            }
            out.push(Tok::Num(c[i..j].iter().collect()));
            i = j;
        } else if ident_char(ch) {
            let mut j = i;
            while j < c.len() && ident_char(c[j]) {
                j += 1;
            }
            out.push(Tok::Ident(c[i..j].iter().collect()));
            i = j;
        } else {
            return Err(format!("unexpected character {ch:?}"));
        }
    }
    Ok(out)
}

struct Toks {
    toks: Vec<Tok>,
    pos: usize,
}

impl Toks {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn attached(&mut self) -> Vec<String> {
        match self.peek() {
            Some(Tok::Attached(f)) => {
                let f = f.clone();
                self.pos += 1;
                f
            }
            _ => Vec::new(),
        }
    }
}

fn parse_pipeline(t: &mut Toks, allow_decl: bool) -> Result<Pipeline, String> {
    let mut decl = None;
    if allow_decl
        && let (Some(Tok::Var(v, f)), Some(op @ (Tok::Declare | Tok::Assign))) =
            (t.toks.get(t.pos), t.toks.get(t.pos + 1))
        && f.is_empty()
    {
        decl = Some((v.clone(), *op == Tok::Declare));
        t.pos += 2;
    }
    let mut cmds = Vec::new();
    loop {
        let mut args = Vec::new();
        while let Some(tok) = t.peek() {
            if matches!(tok, Tok::Pipe | Tok::RParen) {
                break;
            }
            args.push(parse_operand(t)?);
        }
        if args.is_empty() {
            return Err("missing command in pipeline".to_string());
        }
        cmds.push(args);
        if t.peek() == Some(&Tok::Pipe) {
            t.pos += 1;
        } else {
            break;
        }
    }
    Ok(Pipeline { decl, cmds })
}

fn parse_operand(t: &mut Toks) -> Result<Arg, String> {
    match t.next() {
        Some(Tok::Field(f)) => Ok(Arg::Field(f)),
        Some(Tok::Var(v, f)) => Ok(Arg::Var(v, f)),
        Some(Tok::Str(s)) => Ok(Arg::Lit(Value::Str(s))),
        Some(Tok::Num(n)) => {
            let v = if let Ok(i) = n.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(f) = n.parse::<f64>() {
                Value::Float(f)
            } else {
                return Err(format!("bad number {n}"));
            };
            Ok(Arg::Lit(v))
        }
        Some(Tok::Ident(id)) => Ok(match id.as_str() {
            "true" => Arg::Lit(Value::Bool(true)),
            "false" => Arg::Lit(Value::Bool(false)),
            "nil" => Arg::Lit(Value::Nil),
            _ => Arg::Ident(id),
        }),
        Some(Tok::LParen) => {
            let p = parse_pipeline(t, false)?;
            if t.next() != Some(Tok::RParen) {
                return Err("missing `)`".to_string());
            }
            Ok(Arg::Sub(Box::new(p), t.attached()))
        }
        Some(other) => Err(format!("unexpected {other:?}")),
        None => Err("unexpected end of action".to_string()),
    }
}

fn parse_action_pipeline(body: &str, allow_decl: bool) -> Result<Pipeline, String> {
    let mut t = Toks {
        toks: tokenize(body)?,
        pos: 0,
    };
    let p = parse_pipeline(&mut t, allow_decl)?;
    if t.pos < t.toks.len() {
        return Err(format!("unexpected {:?}", t.toks[t.pos]));
    }
    Ok(p)
}

// --------------------------------------------------------------- parsing

enum Stop {
    End,
    Else(Option<String>),
    Eof,
}

struct Parser<'a> {
    name: &'a str,
    pieces: std::vec::IntoIter<Piece>,
    defines: &'a mut HashMap<String, Template>,
}

impl Parser<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> RenderError {
        RenderError::Parse {
            template: self.name.to_string(),
            line,
            message: message.into(),
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop, usize), RenderError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (line, body) = match piece {
                Piece::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t));
                    }
                    continue;
                }
                Piece::Action { line, body } => (line, body),
            };
            let (word, rest) = match body.split_once(char::is_whitespace) {
                Some((w, r)) => (w, r.trim()),
                None => (body.as_str(), ""),
            };
            let pipe = |p: &Self, s: &str| {
                parse_action_pipeline(s, true).map_err(|m| p.err(line, format!("{word}: {m}")))
            };
            match word {
                "end" => return Ok((nodes, Stop::End, line)),
                "else" => {
                    let rest = (!rest.is_empty()).then(|| rest.to_string());
                    return Ok((nodes, Stop::Else(rest), line));
                }
                "if" => {
                    let mut branches = vec![(pipe(self, rest)?, Vec::new())];
                    let mut otherwise = Vec::new();
                    loop {
                        let (body, stop, l) = self.list()?;
                        if let Some(b) = branches.last_mut() {
                            b.1 = body;
                        }
                        match stop {
                            Stop::End => break,
                            Stop::Else(None) => {
                                let (body, stop, l) = self.list()?;
                                if !matches!(stop, Stop::End) {
                                    return Err(self.err(l, "expected {{ end }} after {{ else }}"));
                                }
                                otherwise = body;
                                break;
                            }
                            Stop::Else(Some(e)) => match e.strip_prefix("if ") {
                                Some(cond) => branches.push((pipe(self, cond.trim())?, Vec::new())),
                                None => return Err(self.err(l, format!("unsupported `else {e}`"))),
                            },
                            Stop::Eof => return Err(self.err(line, "`if` without `end`")),
                        }
                    }
                    nodes.push(Node::If {
                        line,
                        branches,
                        otherwise,
                    });
                }
                "range" | "with" => {
                    let (mut key, mut val) = (None, None);
                    let mut expr = rest;
                    if word == "range"
                        && let Some((vars, e)) = rest.split_once(":=")
                    {
                        let vars: Vec<&str> = vars.split(',').map(str::trim).collect();
                        match vars.as_slice() {
                            [v] => val = Some(v.to_string()),
                            [k, v] => {
                                key = Some(k.to_string());
                                val = Some(v.to_string());
                            }
                            _ => return Err(self.err(line, "range: too many variables")),
                        }
                        expr = e.trim();
                    }
                    let p = parse_action_pipeline(expr, word == "with")
                        .map_err(|m| self.err(line, format!("{word}: {m}")))?;
                    let (body, stop, l) = self.list()?;
                    let otherwise = match stop {
                        Stop::End => Vec::new(),
                        Stop::Else(None) => {
                            let (o, stop, l) = self.list()?;
                            if !matches!(stop, Stop::End) {
                                return Err(self.err(l, "expected {{ end }} after {{ else }}"));
                            }
                            o
                        }
                        Stop::Else(Some(e)) => {
                            return Err(self.err(l, format!("unsupported `else {e}`")));
                        }
                        Stop::Eof => return Err(self.err(line, format!("`{word}` without `end`"))),
                    };
                    nodes.push(if word == "range" {
                        Node::Range {
                            line,
                            key,
                            val,
                            pipe: p,
                            body,
                            otherwise,
                        }
                    } else {
                        Node::With {
                            line,
                            pipe: p,
                            body,
                            otherwise,
                        }
                    });
                }
                "define" => {
                    let name = parse_name(rest)
                        .ok_or_else(|| self.err(line, "define: expected a quoted name"))?;
                    let (body, stop, _) = self.list()?;
                    if !matches!(stop, Stop::End) {
                        return Err(self.err(line, "`define` without `end`"));
                    }
                    self.defines
                        .insert(name.clone(), Template { name, nodes: body });
                }
                "template" => {
                    let (name_part, arg) = split_name(rest);
                    let name = parse_name(name_part)
                        .ok_or_else(|| self.err(line, "template: expected a quoted name"))?;
                    let arg = if arg.is_empty() {
                        None
                    } else {
                        Some(pipe(self, arg)?)
                    };
                    nodes.push(Node::Call { line, name, arg });
                }
                "block" | "break" | "continue" => {
                    return Err(
                        self.err(line, format!("`{word}` is not supported by this renderer"))
                    );
                }
                _ => {
                    let p = parse_action_pipeline(&body, true).map_err(|m| self.err(line, m))?;
                    nodes.push(Node::Action { line, pipe: p });
                }
            }
        }
        Ok((nodes, Stop::Eof, 0))
    }
}

fn split_name(s: &str) -> (&str, &str) {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('"')
        && let Some(end) = rest.find('"')
    {
        return (&s[..end + 2], s[end + 2..].trim());
    }
    (s, "")
}

fn parse_name(s: &str) -> Option<String> {
    let s = s.trim();
    s.strip_prefix('"')?.strip_suffix('"').map(str::to_string)
}

impl Template {
    /// Parse a template; its `define`s go into `defines`.
    pub fn parse(
        name: &str,
        src: &str,
        defines: &mut HashMap<String, Template>,
    ) -> Result<Template, RenderError> {
        let pieces = lex(name, src)?;
        let mut p = Parser {
            name,
            pieces: pieces.into_iter(),
            defines,
        };
        let (nodes, stop, line) = p.list()?;
        match stop {
            Stop::Eof => Ok(Template {
                name: name.to_string(),
                nodes,
            }),
            Stop::End => Err(p.err(line, "unexpected {{ end }}")),
            Stop::Else(_) => Err(p.err(line, "unexpected {{ else }}")),
        }
    }
}

// ------------------------------------------------------------- execution

/// Executes templates against a shared set of `define`s.
#[derive(Debug, Default)]
pub struct Renderer {
    defines: HashMap<String, Template>,
}

struct Scope {
    root: Value,
    vars: Vec<(String, Value)>,
    template: String,
    depth: usize,
}

/// How deep `include` may nest (Helm's limit is 1000; ours is lower, as
/// the chart never nests more than a few levels).
const MAX_DEPTH: usize = 100;

impl Renderer {
    /// A renderer with no templates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a template file, keeping its `define`s for every later call.
    pub fn parse(&mut self, name: &str, src: &str) -> Result<Template, RenderError> {
        Template::parse(name, src, &mut self.defines)
    }

    /// Render `t` with `data` as both `.` and `$`. Helm's `<no value>` for
    /// missing keys never appears: they print as nothing.
    pub fn execute(&self, t: &Template, data: &Value) -> Result<String, RenderError> {
        let mut scope = Scope {
            root: data.clone(),
            vars: vec![("$".to_string(), data.clone())],
            template: t.name.clone(),
            depth: 0,
        };
        let mut out = String::new();
        self.nodes(&t.nodes, data, &mut scope, &mut out)?;
        Ok(out)
    }

    /// Render a `define`d template by name (what `include` does).
    pub fn include(&self, name: &str, data: &Value) -> Result<String, RenderError> {
        let t = self.defines.get(name).ok_or_else(|| RenderError::Exec {
            template: name.to_string(),
            line: 0,
            message: format!("no template {name:?}"),
        })?;
        self.execute(t, data)
    }

    fn nodes(
        &self,
        nodes: &[Node],
        dot: &Value,
        s: &mut Scope,
        out: &mut String,
    ) -> Result<(), RenderError> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action { line, pipe } => {
                    let v = self.pipeline(pipe, dot, s, *line)?;
                    if pipe.decl.is_none() {
                        out.push_str(&v.print());
                    }
                }
                Node::If {
                    line,
                    branches,
                    otherwise,
                } => {
                    let mark = s.vars.len();
                    let mut done = false;
                    for (cond, body) in branches {
                        if self.pipeline(cond, dot, s, *line)?.truthy() {
                            self.nodes(body, dot, s, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nodes(otherwise, dot, s, out)?;
                    }
                    s.vars.truncate(mark);
                }
                Node::With {
                    line,
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = s.vars.len();
                    let v = self.pipeline(pipe, dot, s, *line)?;
                    if v.truthy() {
                        self.nodes(body, &v, s, out)?;
                    } else {
                        self.nodes(otherwise, dot, s, out)?;
                    }
                    s.vars.truncate(mark);
                }
                Node::Range {
                    line,
                    key,
                    val,
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = s.vars.len();
                    let v = self.pipeline(pipe, dot, s, *line)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::Int(i as i64), v))
                            .collect(),
                        Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(self.exec_err(
                                s,
                                *line,
                                format!("range can't iterate over {}", other.print()),
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.nodes(otherwise, dot, s, out)?;
                    }
                    for (k, v) in items {
                        let inner = s.vars.len();
                        if let Some(kn) = key {
                            s.vars.push((kn.clone(), k));
                        }
                        if let Some(vn) = val {
                            s.vars.push((vn.clone(), v.clone()));
                        }
                        self.nodes(body, &v, s, out)?;
                        s.vars.truncate(inner);
                    }
                    s.vars.truncate(mark);
                }
                Node::Call { line, name, arg } => {
                    let data = match arg {
                        Some(p) => self.pipeline(p, dot, s, *line)?,
                        None => Value::Nil,
                    };
                    out.push_str(&self.call_define(name, &data, s, *line)?);
                }
            }
        }
        Ok(())
    }

    fn call_define(
        &self,
        name: &str,
        data: &Value,
        s: &Scope,
        line: usize,
    ) -> Result<String, RenderError> {
        let t = self
            .defines
            .get(name)
            .ok_or_else(|| self.exec_err(s, line, format!("no template {name:?}")))?;
        if s.depth >= MAX_DEPTH {
            return Err(self.exec_err(s, line, format!("{name}: include nested too deeply")));
        }
        let mut inner = Scope {
            root: data.clone(),
            vars: vec![("$".to_string(), data.clone())],
            template: name.to_string(),
            depth: s.depth + 1,
        };
        let mut out = String::new();
        self.nodes(&t.nodes, data, &mut inner, &mut out)?;
        Ok(out)
    }

    fn exec_err(&self, s: &Scope, line: usize, message: impl Into<String>) -> RenderError {
        RenderError::Exec {
            template: s.template.clone(),
            line,
            message: message.into(),
        }
    }

    fn pipeline(
        &self,
        p: &Pipeline,
        dot: &Value,
        s: &mut Scope,
        line: usize,
    ) -> Result<Value, RenderError> {
        let mut prev: Option<Value> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, prev, dot, s, line)?);
        }
        let v = prev.unwrap_or(Value::Nil);
        if let Some((name, declare)) = &p.decl {
            if *declare {
                s.vars.push((name.clone(), v.clone()));
            } else {
                match s.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => {
                        return Err(self.exec_err(s, line, format!("undefined variable {name}")));
                    }
                }
            }
        }
        Ok(v)
    }

    fn command(
        &self,
        cmd: &[Arg],
        piped: Option<Value>,
        dot: &Value,
        s: &mut Scope,
        line: usize,
    ) -> Result<Value, RenderError> {
        let Some(first) = cmd.first() else {
            return Ok(Value::Nil);
        };
        if let Arg::Ident(f) = first {
            // `and` and `or` stop at the first operand that decides.
            if (f == "and" || f == "or") && piped.is_none() {
                let mut last = Value::Nil;
                for a in &cmd[1..] {
                    last = self.operand(a, dot, s, line)?;
                    if last.truthy() == (f == "or") {
                        return Ok(last);
                    }
                }
                return Ok(last);
            }
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.operand(a, dot, s, line)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(f, args, s, line);
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(self.exec_err(s, line, "can't give arguments to a non-function"));
        }
        self.operand(first, dot, s, line)
    }

    fn operand(
        &self,
        a: &Arg,
        dot: &Value,
        s: &mut Scope,
        line: usize,
    ) -> Result<Value, RenderError> {
        match a {
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Field(f) => self.fields(dot.clone(), f, ".", s, line),
            Arg::Var(v, f) => {
                let base = if v == "$" {
                    s.root.clone()
                } else {
                    s.vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == v)
                        .map(|(_, val)| val.clone())
                        .ok_or_else(|| self.exec_err(s, line, format!("undefined variable {v}")))?
                };
                self.fields(base, f, v, s, line)
            }
            Arg::Ident(f) => self.call(f, Vec::new(), s, line),
            Arg::Sub(p, f) => {
                let v = self.pipeline(p, dot, s, line)?;
                self.fields(v, f, "(...)", s, line)
            }
        }
    }

    fn fields(
        &self,
        mut v: Value,
        fields: &[String],
        base: &str,
        s: &Scope,
        line: usize,
    ) -> Result<Value, RenderError> {
        let mut path = base.to_string();
        for f in fields {
            v = match v {
                Value::Map(mut m) => m.remove(f).unwrap_or(Value::Nil),
                Value::Nil => {
                    return Err(self.exec_err(
                        s,
                        line,
                        format!("nil pointer evaluating interface {{}}.{f} (at {path})"),
                    ));
                }
                other => {
                    return Err(self.exec_err(
                        s,
                        line,
                        format!(
                            "can't evaluate field {f} in type {} (at {path})",
                            other.kind()
                        ),
                    ));
                }
            };
            if !path.ends_with('.') {
                path.push('.');
            }
            path.push_str(f);
        }
        Ok(v)
    }

    /// Call a function. Helm's pipelines put the piped value last.
    fn call(
        &self,
        f: &str,
        args: Vec<Value>,
        s: &Scope,
        line: usize,
    ) -> Result<Value, RenderError> {
        let err = |m: String| self.exec_err(s, line, format!("{f}: {m}"));
        let want = |n: usize| -> Result<(), RenderError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(format!("wants {n} arguments, got {}", args.len())))
            }
        };
        let string = |v: &Value| v.to_go_string();
        let int = |v: &Value| -> Result<i64, RenderError> {
            match v {
                Value::Int(i) => Ok(*i),
                Value::Float(x) => Ok(*x as i64),
                Value::Str(t) => t
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("not a number: {t:?}"))),
                Value::Bool(b) => Ok(i64::from(*b)),
                Value::Nil => Ok(0),
                other => Err(err(format!("not a number: {}", other.print()))),
            }
        };
        Ok(match f {
            "and" | "or" => {
                // Piped form: every operand is already evaluated.
                let mut last = Value::Nil;
                for a in args {
                    let decide = a.truthy() == (f == "or");
                    last = a;
                    if decide {
                        break;
                    }
                }
                last
            }
            "not" => {
                want(1)?;
                Value::Bool(!args[0].truthy())
            }
            "eq" => {
                if args.len() < 2 {
                    return Err(err("wants at least 2 arguments".to_string()));
                }
                let mut any = false;
                for other in &args[1..] {
                    if go_eq(&args[0], other).map_err(err)? {
                        any = true;
                        break;
                    }
                }
                Value::Bool(any)
            }
            "ne" => {
                want(2)?;
                Value::Bool(!go_eq(&args[0], &args[1]).map_err(err)?)
            }
            "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                let ord = go_cmp(&args[0], &args[1]).map_err(err)?;
                Value::Bool(match f {
                    "lt" => ord.is_lt(),
                    "le" => ord.is_le(),
                    "gt" => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            "len" => {
                want(1)?;
                Value::Int(match &args[0] {
                    Value::Str(t) => t.len(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    other => return Err(err(format!("len of {}", other.kind()))),
                } as i64)
            }
            "print" => Value::Str(go_sprint(&args)),
            "printf" => {
                let Some((fmt, rest)) = args.split_first() else {
                    return Err(err("wants a format".to_string()));
                };
                Value::Str(go_sprintf(&string(fmt), rest).map_err(err)?)
            }
            "include" => {
                want(2)?;
                let Value::Str(name) = &args[0] else {
                    return Err(err("the name must be a string".to_string()));
                };
                Value::Str(self.call_define(name, &args[1], s, line)?)
            }
            "fail" => {
                want(1)?;
                return Err(RenderError::Fail {
                    template: s.template.clone(),
                    line,
                    message: string(&args[0]),
                });
            }
            "required" => {
                want(2)?;
                let missing = match &args[1] {
                    Value::Nil => true,
                    Value::Str(t) => t.is_empty(),
                    _ => false,
                };
                if missing {
                    return Err(RenderError::Fail {
                        template: s.template.clone(),
                        line,
                        message: string(&args[0]),
                    });
                }
                args[1].clone()
            }
            "toYaml" => {
                want(1)?;
                Value::Str(to_yaml(&args[0]))
            }
            "toJson" => {
                want(1)?;
                Value::Str(args[0].to_json().to_string())
            }
            "quote" => Value::Str(
                args.iter()
                    .filter(|a| !matches!(a, Value::Nil))
                    .map(|a| go_quote(&string(a)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "squote" => Value::Str(
                args.iter()
                    .filter(|a| !matches!(a, Value::Nil))
                    .map(|a| format!("'{}'", string(a)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "default" => {
                // `default D` with nothing piped gives D.
                match args.len() {
                    1 => args[0].clone(),
                    2 => {
                        if sprig_empty(&args[1]) {
                            args[0].clone()
                        } else {
                            args[1].clone()
                        }
                    }
                    n => return Err(err(format!("wants 1 or 2 arguments, got {n}"))),
                }
            }
            "empty" => {
                want(1)?;
                Value::Bool(sprig_empty(&args[0]))
            }
            "coalesce" => args
                .into_iter()
                .find(|a| !sprig_empty(a))
                .unwrap_or(Value::Nil),
            "ternary" => {
                want(3)?;
                if args[2].truthy() {
                    args[0].clone()
                } else {
                    args[1].clone()
                }
            }
            "toString" => {
                want(1)?;
                Value::Str(string(&args[0]))
            }
            "int" | "int64" => {
                want(1)?;
                Value::Int(int(&args[0])?)
            }
            "float64" => {
                want(1)?;
                Value::Float(match &args[0] {
                    Value::Float(x) => *x,
                    other => int(other)? as f64,
                })
            }
            "indent" | "nindent" => {
                want(2)?;
                let n = usize::try_from(int(&args[0])?)
                    .map_err(|_| err("negative indent".to_string()))?;
                let pad = " ".repeat(n);
                let body = format!(
                    "{pad}{}",
                    string(&args[1]).replace('\n', &format!("\n{pad}"))
                );
                Value::Str(if f == "nindent" {
                    format!("\n{body}")
                } else {
                    body
                })
            }
            "trim" => {
                want(1)?;
                Value::Str(string(&args[0]).trim().to_string())
            }
            "trimSuffix" | "trimPrefix" => {
                want(2)?;
                let (affix, text) = (string(&args[0]), string(&args[1]));
                Value::Str(if f == "trimSuffix" {
                    text.strip_suffix(affix.as_str())
                        .unwrap_or(&text)
                        .to_string()
                } else {
                    text.strip_prefix(affix.as_str())
                        .unwrap_or(&text)
                        .to_string()
                })
            }
            "trunc" => {
                want(2)?;
                let n = int(&args[0])?;
                let text = string(&args[1]);
                let n = usize::try_from(n).unwrap_or(0);
                Value::Str(text.chars().take(n).collect())
            }
            "replace" => {
                want(3)?;
                Value::Str(string(&args[2]).replace(&string(&args[0]), &string(&args[1])))
            }
            "lower" => {
                want(1)?;
                Value::Str(string(&args[0]).to_lowercase())
            }
            "upper" => {
                want(1)?;
                Value::Str(string(&args[0]).to_uppercase())
            }
            "contains" | "hasPrefix" | "hasSuffix" => {
                want(2)?;
                let (needle, text) = (string(&args[0]), string(&args[1]));
                Value::Bool(match f {
                    "contains" => text.contains(&needle),
                    "hasPrefix" => text.starts_with(&needle),
                    _ => text.ends_with(&needle),
                })
            }
            "list" => Value::List(args),
            "has" => {
                want(2)?;
                match &args[1] {
                    Value::List(l) => Value::Bool(l.contains(&args[0])),
                    Value::Nil => Value::Bool(false),
                    other => return Err(err(format!("cannot find in {}", other.kind()))),
                }
            }
            "dict" => {
                let mut m = BTreeMap::new();
                let mut it = args.into_iter();
                while let Some(k) = it.next() {
                    m.insert(string(&k), it.next().unwrap_or(Value::Nil));
                }
                Value::Map(m)
            }
            "hasKey" => {
                want(2)?;
                match &args[0] {
                    Value::Map(m) => Value::Bool(m.contains_key(&string(&args[1]))),
                    other => return Err(err(format!("not a map: {}", other.kind()))),
                }
            }
            "kindIs" => {
                want(2)?;
                Value::Bool(string(&args[0]) == args[1].kind())
            }
            "join" => {
                want(2)?;
                let sep = string(&args[0]);
                match &args[1] {
                    Value::List(l) => Value::Str(
                        l.iter()
                            .filter(|v| !matches!(v, Value::Nil))
                            .map(string)
                            .collect::<Vec<_>>()
                            .join(&sep),
                    ),
                    other => Value::Str(string(other)),
                }
            }
            other => {
                return Err(self.exec_err(
                    s,
                    line,
                    format!("function {other:?} is not supported by this renderer"),
                ));
            }
        })
    }
}

/// Sprig's `empty`: nil, false, 0, "" and empty collections.
fn sprig_empty(v: &Value) -> bool {
    !v.truthy()
}

#[derive(PartialEq)]
enum Basic {
    Bool,
    Int,
    Float,
    Str,
}

fn basic(v: &Value) -> Option<Basic> {
    match v {
        Value::Bool(_) => Some(Basic::Bool),
        Value::Int(_) => Some(Basic::Int),
        Value::Float(_) => Some(Basic::Float),
        Value::Str(_) => Some(Basic::Str),
        _ => None,
    }
}

/// Go's `eq` on two operands: basic kinds must match (an int and a float
/// do not compare); nil equals only nil.
fn go_eq(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Nil, Value::Nil) => return Ok(true),
        (Value::Nil, _) | (_, Value::Nil) => return Ok(false),
        _ => {}
    }
    match (basic(a), basic(b)) {
        (Some(x), Some(y)) if x == y => Ok(a == b),
        (Some(_), Some(_)) => Err(format!(
            "incompatible types for comparison: {} and {}",
            a.kind(),
            b.kind()
        )),
        _ => Err(format!(
            "non-comparable types: {} and {}",
            a.kind(),
            b.kind()
        )),
    }
}

fn go_cmp(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).ok_or_else(|| "NaN".to_string()),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            a.kind(),
            b.kind()
        )),
    }
}

/// Go's `%q` of a string (the escapes a chart's values can contain).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn go_sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_go_string());
    }
    out
}

/// `printf` with `%s %v %d %q %%`.
fn go_sprintf(fmt: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q')) => {
                let a = it
                    .next()
                    .ok_or_else(|| format!("missing argument for %{verb}"))?;
                match verb {
                    'q' => out.push_str(&go_quote(&a.to_go_string())),
                    'd' => match a {
                        Value::Int(i) => out.push_str(&i.to_string()),
                        other => return Err(format!("%d of {}", other.kind())),
                    },
                    _ => out.push_str(&a.to_go_string()),
                }
            }
            Some(o) => return Err(format!("unsupported verb %{o}")),
            None => return Err("format ends with %".to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(yaml: &str) -> Value {
        let j: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        Value::from_json_values(&j)
    }

    fn render(src: &str, yaml: &str) -> Result<String, RenderError> {
        let mut r = Renderer::new();
        let t = r.parse("t", src)?;
        r.execute(&t, &data(yaml))
    }

    fn ok(src: &str, yaml: &str) -> String {
        render(src, yaml).unwrap()
    }

    #[test]
    fn fields_and_trim() {
        assert_eq!(
            ok("a: {{ .Values.x.y }}\n", "Values: {x: {y: 3}}"),
            "a: 3\n"
        );
        assert_eq!(ok("a:\n  {{- .v }}  \n  b", "v: 1"), "a:1  \n  b");
        assert_eq!(ok("x {{- /* c */ -}} y", "{}"), "xy");
        assert_eq!(ok("[{{ .missing }}]", "{}"), "[]");
        assert!(render("{{ .a.b }}", "{}").is_err(), "field of nil");
        assert_eq!(ok("{{ $.a }}", "a: z"), "z");
    }

    #[test]
    fn conditionals() {
        let src = "{{- if .a }}A{{ else if .b }}B{{ else }}C{{ end }}";
        assert_eq!(ok(src, "a: true"), "A");
        assert_eq!(ok(src, "b: x"), "B");
        assert_eq!(ok(src, "a: 0"), "C");
        assert_eq!(
            ok("{{ if and .a (not .b) }}y{{ end }}", "a: 1\nb: false"),
            "y"
        );
        assert_eq!(ok("{{ or .a .b \"z\" }}", "a: ''\nb: 0"), "z");
        // `and` stops before the field of nil.
        assert_eq!(ok("{{ if and .a .a.b }}y{{ else }}n{{ end }}", "{}"), "n");
        assert_eq!(ok("{{ eq .a \"x\" \"yy\" }}", "a: yy"), "true");
        assert!(render("{{ eq .n 3 }}", "n: 3").is_err(), "float64 vs int");
        assert_eq!(ok("{{ eq (int .n) 3 }}", "n: 3"), "true");
    }

    #[test]
    fn range_with_and_variables() {
        assert_eq!(
            ok("{{ range .l }}<{{ . }}>{{ end }}", "l: [a, b]"),
            "<a><b>"
        );
        assert_eq!(
            ok(
                "{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}",
                "m: {b: 2, a: 1}"
            ),
            "a=1;b=2;"
        );
        assert_eq!(
            ok("{{ range .l }}x{{ else }}empty{{ end }}", "l: []"),
            "empty"
        );
        assert_eq!(ok("{{ with .m }}{{ .a }}{{ end }}", "m: {a: 1}"), "1");
        assert_eq!(
            ok(
                "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
                "{}"
            ),
            "2"
        );
        assert!(render("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", "{}").is_err());
    }

    #[test]
    fn helm_functions() {
        assert_eq!(ok("{{ .a | quote }}", "a: x\"y"), "\"x\\\"y\"");
        assert_eq!(ok("{{ .a | default \"d\" }}", "a: ''"), "d");
        assert_eq!(ok("{{ .a | default \"d\" }}", "a: v"), "v");
        assert_eq!(
            ok("k:{{ .m | toYaml | nindent 2 }}", "m: {b: [1, 2], a: x}"),
            "k:\n  a: x\n  b:\n  - 1\n  - 2"
        );
        assert_eq!(ok("{{ kindIs \"bool\" .a }}", "a: true"), "true");
        assert_eq!(ok("{{ kindIs \"invalid\" .a }}", "{}"), "true");
        assert_eq!(
            ok("{{ has (toString .n) (list \"1\" \"2\") }}", "n: 2"),
            "true"
        );
        assert_eq!(ok("{{ printf \"%s-%d\" .a 3 }}", "a: x"), "x-3");
        assert_eq!(
            ok("{{ .a | trunc 3 | trimSuffix \"-\" }}", "a: ab-cd"),
            "ab"
        );
        assert_eq!(ok("{{ .n }}", "n: 1000000"), "1e+06");
        let e = render("{{ fail \"no\" }}", "{}").unwrap_err();
        assert!(matches!(e, RenderError::Fail { .. }), "{e}");
        assert!(render("{{ lookup \"v1\" }}", "{}").is_err());
    }

    #[test]
    fn defines_and_include() {
        let mut r = Renderer::new();
        r.parse(
            "_helpers.tpl",
            "{{- define \"n\" -}}{{ .Name }}-x{{- end }}",
        )
        .unwrap();
        let t = r
            .parse(
                "t",
                "a: {{ include \"n\" . | upper }} {{ template \"n\" . }}",
            )
            .unwrap();
        assert_eq!(r.execute(&t, &data("Name: r")).unwrap(), "a: R-X r-x");
    }

    #[test]
    fn errors_name_the_line() {
        let e = render("a\nb\n{{ if .x }}", "{}").unwrap_err();
        assert!(e.to_string().contains("t:3"), "{e}");
        let e = render("a\n{{ nosuch 1 }}", "{}").unwrap_err();
        assert!(e.to_string().contains("t:2"), "{e}");
    }
}
