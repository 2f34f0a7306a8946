//! The original's config directories: an `__init__.py` whose `init(config)` sets
//! `config.DEFAULT_*`, `config.SUBMAP[...]`, `config.PUBKEYS` and calls `config.add_bundle` /
//! `config.new_bundle`. It is read statically — never executed — as the small subset of Python
//! that real files use (literals, lists, dicts, `os.path.join`/`expanduser`/`dirname` of
//! literals, `.extend/.append/.update`, `=` and `+=`), into the same [`LayerConfig`] a
//! `provision.toml` gives, with `__init__.py:LINE` as each value's origin. Anything outside
//! the subset is a config error (exit 2) naming the file, the line and the construct.

use super::pytoken::{self, Line, Tok, Token};
use super::schema::{BundleDef, FilesDef, LayerConfig};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the original put its scripts on the node; `new_bundle` targets must be under it.
const ORIGINAL_TARGETDIR: &str = "/root/deploy";

/// A Python value of the subset.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    List(Vec<Val>),
    Dict(Vec<(Val, Val)>),
}

impl Val {
    /// The value as Python would print it (`repr`), for messages.
    fn py(&self) -> String {
        match self {
            Val::Str(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Val::Int(n) => n.to_string(),
            Val::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Val::None => "None".to_string(),
            Val::List(items) => format!(
                "[{}]",
                items.iter().map(Val::py).collect::<Vec<_>>().join(", ")
            ),
            Val::Dict(items) => format!(
                "{{{}}}",
                items
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.py(), v.py()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Bool(_) => "a boolean",
            Val::None => "None",
            Val::List(_) => "a list",
            Val::Dict(_) => "a dict",
        }
    }
}

/// Reads `dir/__init__.py` (already loaded as `text`; `display` names it in messages).
pub fn parse(dir: &Path, display: &str, text: &str) -> Result<LayerConfig> {
    let lines = pytoken::lines(text).map_err(|(line, m)| {
        Error::config(format!(
            "{display}:{line}: {m} (read statically, never executed)"
        ))
    })?;
    let mut r = Reader {
        dir: dir.to_path_buf(),
        display: display.to_string(),
        param: None,
        aliases: BTreeMap::new(),
        lc: LayerConfig::default(),
        userid: None,
        secret: None,
    };
    let mut in_init = false;
    for l in &lines {
        if l.indent == 0 {
            in_init = false;
            if let Some(body_start) = r.top(l)? {
                in_init = true;
                if body_start < l.toks.len() {
                    r.body(l, &l.toks[body_start..])?;
                }
            }
        } else if in_init {
            r.body(l, &l.toks)?;
        } else {
            return Err(r.outside(l.line, "an indented block outside `def init(config):`"));
        }
    }
    if r.param.is_none() {
        return Err(Error::config(format!(
            "{display}: no `def init(config):`, so this directory sets nothing (the original \
             would have ignored it too); remove __init__.py or add init()"
        )));
    }
    r.finish()
}

struct Reader {
    dir: PathBuf,
    display: String,
    /// The name `init`'s parameter has (`config` in the original's examples).
    param: Option<String>,
    /// `from os.path import join as j`: local name → `os.path.join`.
    aliases: BTreeMap<String, String>,
    lc: LayerConfig,
    userid: Option<(String, usize)>,
    secret: Option<(String, usize)>,
}

/// A cursor over one logical line's tokens.
struct Cur<'a> {
    toks: &'a [Token],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn peek_at(&self, n: usize) -> Option<&'a Tok> {
        self.toks.get(self.pos + n).map(|t| &t.tok)
    }
    fn next(&mut self) -> Option<&'a Tok> {
        let t = self.peek();
        self.pos += 1;
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if o == op)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn name(&mut self) -> Option<&'a str> {
        match self.peek() {
            Some(Tok::Name(n)) => {
                self.pos += 1;
                Some(n)
            }
            _ => None,
        }
    }
    fn done(&self) -> bool {
        self.pos >= self.toks.len()
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map(|t| t.line)
            .unwrap_or(0)
    }
}

/// Source-like text of some tokens, for naming a construct in a message.
fn snippet(toks: &[Token]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        let piece = match &t.tok {
            Tok::Name(n) => n.clone(),
            Tok::Str(v) => format!("{v:?}"),
            Tok::Int(n) => n.to_string(),
            Tok::Op(o) => o.clone(),
        };
        let glue = matches!(&t.tok, Tok::Op(o) if [".", "(", ")", "[", "]", ",", ":"].contains(&o.as_str()))
            || matches!(toks.get(i.wrapping_sub(1)).map(|t| &t.tok), Some(Tok::Op(o)) if [".", "(", "["].contains(&o.as_str()));
        if i > 0 && !glue {
            s.push(' ');
        }
        s.push_str(&piece);
        if s.chars().count() > 60 {
            let cut: String = s.chars().take(57).collect();
            return format!("{cut}...");
        }
    }
    s
}

const SUBSET: &str = "provision reads __init__.py statically, never running it: only \
assignments to config settings, .extend/.append/.update, add_bundle/new_bundle calls, literals \
and os.path.join/expanduser/dirname of literals";

impl Reader {
    fn outside(&self, line: usize, what: &str) -> Error {
        Error::config(format!(
            "{}:{line}: {what} is not supported ({SUBSET})",
            self.display
        ))
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::config(format!("{}:{line}: {msg}", self.display))
    }

    fn origin(&self, line: usize) -> String {
        format!("{}:{line}", self.display)
    }

    /// A module-level line: a docstring, an import, or `def init(config):` (returns the index
    /// of the first body token on the same line, if the def has one).
    fn top(&mut self, l: &Line) -> Result<Option<usize>> {
        let mut c = Cur {
            toks: &l.toks,
            pos: 0,
        };
        match c.peek() {
            Some(Tok::Str(_)) if l.toks.iter().all(|t| matches!(t.tok, Tok::Str(_))) => Ok(None),
            Some(Tok::Name(k)) if k == "import" => Ok(None),
            Some(Tok::Name(k)) if k == "from" => {
                c.next();
                let mut module = String::new();
                while let Some(n) = c.name() {
                    if n == "import" {
                        break;
                    }
                    module.push_str(n);
                    if c.eat_op(".") {
                        module.push('.');
                    }
                }
                c.eat_op("(");
                while let Some(n) = c.name() {
                    let local = if matches!(c.peek(), Some(Tok::Name(a)) if a == "as") {
                        c.next();
                        c.name().unwrap_or(n)
                    } else {
                        n
                    };
                    self.aliases
                        .insert(local.to_string(), format!("{module}.{n}"));
                    if !c.eat_op(",") {
                        break;
                    }
                }
                Ok(None)
            }
            Some(Tok::Name(k)) if k == "def" => {
                c.next();
                let fname = c.name().unwrap_or("");
                let ok_sig = c.eat_op("(");
                let param = c.name();
                if fname != "init" || !ok_sig || param.is_none() || !c.eat_op(")") || !c.eat_op(":")
                {
                    return Err(self.outside(
                        l.line,
                        &format!("`{}` (only `def init(config):`)", snippet(&l.toks)),
                    ));
                }
                if self.param.is_some() {
                    return Err(self.err(l.line, "a second `def init`: only one is read"));
                }
                self.param = param.map(str::to_string);
                Ok(Some(c.pos))
            }
            _ => Err(self.outside(l.line, &format!("`{}`", snippet(&l.toks)))),
        }
    }

    /// One statement of `init`'s body.
    fn body(&mut self, l: &Line, toks: &[Token]) -> Result<()> {
        let mut c = Cur { toks, pos: 0 };
        let line = l.line;
        match c.peek() {
            Some(Tok::Str(_)) if toks.iter().all(|t| matches!(t.tok, Tok::Str(_))) => return Ok(()),
            Some(Tok::Name(k)) if k == "pass" && toks.len() == 1 => return Ok(()),
            _ => {}
        }
        let param = self.param.clone().unwrap_or_default();
        let whole = || format!("`{}`", snippet(toks));
        if c.name() != Some(param.as_str()) || !c.eat_op(".") {
            return Err(self.outside(line, &whole()));
        }
        let Some(attr) = c.name() else {
            return Err(self.outside(line, &whole()));
        };
        let attr = attr.to_string();
        if c.eat_op("=") {
            let v = self.expr(&mut c)?;
            self.end(&c, toks)?;
            return self.assign(line, &attr, v);
        }
        if c.eat_op("+=") {
            let v = self.expr(&mut c)?;
            self.end(&c, toks)?;
            return self.extend(line, &attr, v, "+=");
        }
        if c.eat_op("[") {
            let key = self.expr(&mut c)?;
            if !c.eat_op("]") || !c.eat_op("=") {
                return Err(self.outside(line, &whole()));
            }
            let v = self.expr(&mut c)?;
            self.end(&c, toks)?;
            return self.set_item(line, &attr, key, v);
        }
        if c.eat_op(".") {
            let method = c.name().unwrap_or("").to_string();
            if !c.eat_op("(") {
                return Err(self.outside(line, &whole()));
            }
            let (args, kwargs) = self.args(&mut c)?;
            self.end(&c, toks)?;
            if !kwargs.is_empty() || args.len() != 1 {
                return Err(self.outside(line, &whole()));
            }
            let arg = args.into_iter().next().expect("one");
            return match method.as_str() {
                "extend" => self.extend(line, &attr, arg, ".extend"),
                "append" => self.extend(line, &attr, Val::List(vec![arg]), ".append"),
                "update" if attr == "SUBMAP" => self.update_submap(line, arg),
                _ => Err(self.outside(line, &format!("`config.{attr}.{method}(...)`"))),
            };
        }
        if c.eat_op("(") {
            let (args, kwargs) = self.args(&mut c)?;
            self.end(&c, toks)?;
            return match attr.as_str() {
                "add_bundle" => self.add_bundle(line, args, kwargs),
                "new_bundle" => self.new_bundle(line, args, kwargs),
                _ => Err(self.outside(line, &format!("`config.{attr}(...)`"))),
            };
        }
        Err(self.outside(line, &whole()))
    }

    fn end(&self, c: &Cur, toks: &[Token]) -> Result<()> {
        if c.done() {
            Ok(())
        } else {
            Err(self.outside(c.line(), &format!("`{}`", snippet(&toks[c.pos..]))))
        }
    }

    /// Call arguments after `(`, through `)`.
    #[allow(clippy::type_complexity)]
    fn args(&self, c: &mut Cur) -> Result<(Vec<Val>, Vec<(String, Val, usize)>)> {
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        while !c.eat_op(")") {
            if c.done() {
                return Err(self.err(c.line(), "a call that is never closed"));
            }
            if let (Some(Tok::Name(k)), Some(Tok::Op(eq))) = (c.peek(), c.peek_at(1)) {
                if eq == "=" {
                    let line = c.line();
                    c.pos += 2;
                    kwargs.push((k.clone(), self.expr(c)?, line));
                    if !c.eat_op(",") && !c.is_op(")") {
                        return Err(self.outside(c.line(), "this argument list"));
                    }
                    continue;
                }
            }
            args.push(self.expr(c)?);
            if !c.eat_op(",") && !c.is_op(")") {
                return Err(self.outside(c.line(), "this argument list"));
            }
        }
        Ok((args, kwargs))
    }

    /// `a + b + ...` of strings or lists.
    fn expr(&self, c: &mut Cur) -> Result<Val> {
        let mut v = self.atom(c)?;
        while c.eat_op("+") {
            let line = c.line();
            let w = self.atom(c)?;
            v = match (v, w) {
                (Val::Str(a), Val::Str(b)) => Val::Str(a + &b),
                (Val::List(mut a), Val::List(b)) => {
                    a.extend(b);
                    Val::List(a)
                }
                (a, b) => {
                    return Err(self.outside(line, &format!("`+` of {} and {}", a.kind(), b.kind())))
                }
            };
        }
        Ok(v)
    }

    fn atom(&self, c: &mut Cur) -> Result<Val> {
        let line = c.line();
        let start = c.pos;
        let Some(t) = c.next() else {
            return Err(self.err(line, "an expression was expected"));
        };
        match t {
            Tok::Str(s) => {
                let mut s = s.clone();
                while let Some(Tok::Str(more)) = c.peek() {
                    s.push_str(more);
                    c.next();
                }
                Ok(Val::Str(s))
            }
            Tok::Int(n) => Ok(Val::Int(*n)),
            Tok::Op(o) if o == "-" => match c.next() {
                Some(Tok::Int(n)) => Ok(Val::Int(-n)),
                _ => Err(self.outside(line, "`-` of something not a number")),
            },
            Tok::Op(o) if o == "[" || o == "(" => {
                let close = if o == "[" { "]" } else { ")" };
                let mut items = Vec::new();
                let mut comma = false;
                while !c.eat_op(close) {
                    if c.done() {
                        return Err(self.err(line, format!("a `{o}` that is never closed")));
                    }
                    items.push(self.expr(c)?);
                    comma = c.eat_op(",");
                    if !comma && !c.is_op(close) {
                        return Err(
                            self.outside(c.line(), &format!("`{}`", snippet(&c.toks[start..])))
                        );
                    }
                }
                if o == "(" && items.len() == 1 && !comma {
                    return Ok(items.pop().expect("one"));
                }
                Ok(Val::List(items))
            }
            Tok::Op(o) if o == "{" => {
                let mut items = Vec::new();
                while !c.eat_op("}") {
                    if c.done() {
                        return Err(self.err(line, "a `{` that is never closed"));
                    }
                    let k = self.expr(c)?;
                    if !c.eat_op(":") {
                        return Err(self.outside(c.line(), "a set or dict comprehension"));
                    }
                    let v = self.expr(c)?;
                    items.push((k, v));
                    if !c.eat_op(",") && !c.is_op("}") {
                        return Err(
                            self.outside(c.line(), &format!("`{}`", snippet(&c.toks[start..])))
                        );
                    }
                }
                Ok(Val::Dict(items))
            }
            Tok::Name(n) => {
                match n.as_str() {
                    "None" => return Ok(Val::None),
                    "True" => return Ok(Val::Bool(true)),
                    "False" => return Ok(Val::Bool(false)),
                    "__file__" => {
                        return Ok(Val::Str(self.dir.join("__init__.py").display().to_string()))
                    }
                    _ => {}
                }
                let mut dotted = n.clone();
                while c.is_op(".") {
                    c.next();
                    match c.name() {
                        Some(m) => {
                            dotted.push('.');
                            dotted.push_str(m);
                        }
                        None => return Err(self.outside(line, &format!("`{dotted}.`"))),
                    }
                }
                if self.param.as_deref().map(|p| format!("{p}.PATH")) == Some(dotted.clone()) {
                    return Ok(Val::Str(self.dir.display().to_string()));
                }
                let func = self.aliases.get(&dotted).cloned().unwrap_or(dotted.clone());
                if !c.eat_op("(") {
                    return Err(self.outside(
                        line,
                        &format!("the name `{dotted}` (only literals are read)"),
                    ));
                }
                let (args, kwargs) = self.args(c)?;
                let strs: Option<Vec<String>> = args
                    .iter()
                    .map(|a| match a {
                        Val::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                let call = format!("`{dotted}(...)`");
                let Some(strs) = strs.filter(|_| kwargs.is_empty()) else {
                    return Err(self.outside(line, &format!("{call} with non-string arguments")));
                };
                match (func.as_str(), strs.as_slice()) {
                    ("os.path.join", [_, ..]) => {
                        let mut p = PathBuf::new();
                        for s in &strs {
                            p.push(s);
                        }
                        Ok(Val::Str(p.display().to_string()))
                    }
                    ("os.path.expanduser", [s]) => Ok(Val::Str(expanduser(s))),
                    ("os.path.dirname", [s]) => Ok(Val::Str(match s.rfind('/') {
                        Some(0) => "/".into(),
                        Some(i) => s[..i].to_string(),
                        None => String::new(),
                    })),
                    _ => Err(self.outside(line, &call)),
                }
            }
            Tok::Op(o) => Err(self.outside(line, &format!("`{o}`"))),
        }
    }

    fn string(&self, line: usize, what: &str, v: Val) -> Result<Option<String>> {
        match v {
            Val::Str(s) => Ok(Some(s)),
            Val::None => Ok(None),
            other => Err(self.err(
                line,
                format!("{what} must be a string, not {}", other.kind()),
            )),
        }
    }

    fn strings(&self, line: usize, what: &str, v: Val) -> Result<Vec<String>> {
        match v {
            Val::List(items) => items.into_iter().map(|i| match i {
                Val::Str(s) => Ok(s),
                other => Err(self.err(
                    line,
                    format!("{what}: every item must be a string, not {}", other.kind()),
                )),
            }),
            other => {
                return Err(self.err(
                    line,
                    format!("{what} must be a list of strings, not {}", other.kind()),
                ))
            }
        }
        .collect()
    }

    /// The list setting `attr` names, with its key in provision.toml.
    fn list_slot(&mut self, attr: &str) -> Option<(&'static str, &mut Vec<String>)> {
        Some(match attr {
            "DEFAULT_BUNDLES" => ("default_bundles", &mut self.lc.default_bundles),
            "DEFAULT_BOOTSTRAP_BUNDLES" => ("bootstrap_bundles", &mut self.lc.bootstrap_bundles),
            "BOOTSTRAPPED_IMAGE_NAMES" => ("bootstrapped_images", &mut self.lc.bootstrapped_images),
            "DESTROYABLE_PREFIXES" => ("destroyable_prefixes", &mut self.lc.destroyable_prefixes),
            "PUBKEYS" => ("pubkeys", &mut self.lc.pubkeys),
            _ => return None,
        })
    }

    fn assign(&mut self, line: usize, attr: &str, v: Val) -> Result<()> {
        let what = format!("config.{attr}");
        let origin = self.origin(line);
        let scalar = |r: &mut Reader, key: &str, v: Val| -> Result<()> {
            let s = r.string(line, &what, v)?;
            let slot = match key {
                "provider" => &mut r.lc.provider,
                "image" => &mut r.lc.image,
                "size" => &mut r.lc.size,
                "location" => &mut r.lc.location,
                _ => &mut r.lc.name_prefix,
            };
            if s.is_some() {
                r.lc.origins.insert(key.to_string(), origin.clone());
            }
            *slot = s;
            Ok(())
        };
        match attr {
            "DEFAULT_PROVIDER" => scalar(self, "provider", v),
            "DEFAULT_IMAGE_NAME" => scalar(self, "image", v),
            "DEFAULT_NAME_PREFIX" => scalar(self, "name_prefix", v),
            "DEFAULT_SIZE_ID" | "DEFAULT_LOCATION_ID" => {
                let key = if attr == "DEFAULT_SIZE_ID" {
                    "size"
                } else {
                    "location"
                };
                if let Val::Int(n) = v {
                    return Err(self.err(
                        line,
                        format!(
                            "{what} = {n}: the original took an index into the provider's {key} \
                             list; give the {key}'s name instead (list-nodes -p PROVIDER --{key}s)"
                        ),
                    ));
                }
                scalar(self, key, v)
            }
            "DEFAULT_USERID" => {
                self.userid = self.string(line, &what, v)?.map(|s| (s, line));
                Ok(())
            }
            "DEFAULT_SECRET_KEY" => {
                self.secret = self.string(line, &what, v)?.map(|s| (s, line));
                Ok(())
            }
            "DEFAULT_PUBKEY" => {
                let key = self.string(line, &what, v)?;
                self.lc.pubkeys.extend(key);
                Ok(())
            }
            "DEFAULT_TARGETDIR" => match v {
                Val::Str(s) if s.trim_end_matches('/') == ORIGINAL_TARGETDIR => Ok(()),
                other => Err(self.err(
                    line,
                    format!(
                        "{what} = {}: scripts always land in {ORIGINAL_TARGETDIR} \
                         (the login user's ~/deploy without root)",
                        other.py()
                    ),
                )),
            },
            "NODE_METADATA_CONTAINER_NAME" => {
                self.lc.warnings.push(format!(
                    "{origin}: {what} is not used: nodes carry a 'provision' tag instead of \
                     Cloud Files metadata, and destroyable_prefixes guards destroy-node"
                ));
                Ok(())
            }
            "SUBMAP" => {
                self.lc.warnings.push(format!(
                    "{origin}: {what} = {{...}} adds to the variables of lower layers here \
                     instead of replacing them"
                ));
                self.update_submap(line, v)
            }
            _ => {
                let list = self.strings(line, &what, v.clone());
                match self.list_slot(attr) {
                    Some((key, slot)) => {
                        *slot = list?;
                        if !self.lc.replaces.contains(&key) {
                            self.lc.replaces.push(key);
                        }
                        Ok(())
                    }
                    None => Err(self.unknown_setting(line, attr)),
                }
            }
        }
    }

    fn unknown_setting(&self, line: usize, attr: &str) -> Error {
        self.err(
            line,
            format!(
                "config.{attr} is not a setting provision reads (it reads DEFAULT_PROVIDER, \
                 DEFAULT_USERID, DEFAULT_SECRET_KEY, DEFAULT_IMAGE_NAME, DEFAULT_SIZE_ID, \
                 DEFAULT_LOCATION_ID, DEFAULT_NAME_PREFIX, DEFAULT_BUNDLES, \
                 DEFAULT_BOOTSTRAP_BUNDLES, BOOTSTRAPPED_IMAGE_NAMES, DESTROYABLE_PREFIXES, \
                 PUBKEYS, SUBMAP)"
            ),
        )
    }

    fn extend(&mut self, line: usize, attr: &str, v: Val, how: &str) -> Result<()> {
        let list = self.strings(line, &format!("config.{attr}{how}"), v)?;
        match self.list_slot(attr) {
            Some((_, slot)) => {
                slot.extend(list);
                Ok(())
            }
            None => Err(self.unknown_setting(line, attr)),
        }
    }

    fn set_item(&mut self, line: usize, attr: &str, key: Val, v: Val) -> Result<()> {
        if attr != "SUBMAP" {
            return Err(self.outside(line, &format!("`config.{attr}[...] = ...`")));
        }
        self.update_submap(line, Val::Dict(vec![(key, v)]))
    }

    fn update_submap(&mut self, line: usize, v: Val) -> Result<()> {
        let Val::Dict(items) = v else {
            return Err(self.err(
                line,
                format!("config.SUBMAP takes a dict, not {}", v.kind()),
            ));
        };
        for (k, v) in items {
            let Val::Str(k) = k else {
                return Err(self.err(line, "config.SUBMAP: keys must be strings"));
            };
            let value = match v {
                Val::Str(s) => toml::Value::String(s),
                Val::Int(n) => toml::Value::Integer(n),
                Val::Bool(b) => toml::Value::Boolean(b),
                other => {
                    return Err(self.err(
                        line,
                        format!(
                            "config.SUBMAP['{k}']: a string or number, not {}",
                            other.kind()
                        ),
                    ))
                }
            };
            self.lc
                .origins
                .insert(format!("vars.{k}"), self.origin(line));
            self.lc.vars.insert(k, value);
        }
        Ok(())
    }

    fn bundle_name(&self, line: usize, v: Option<Val>) -> Result<String> {
        match v {
            Some(Val::Str(s)) => Ok(s),
            _ => Err(self.err(line, "a bundle's name must be a string literal")),
        }
    }

    fn put_bundle(&mut self, line: usize, name: String, def: BundleDef) {
        if self.lc.bundles.contains_key(&name) {
            self.lc.warnings.push(format!(
                "{}: bundle '{name}' is defined again; this one wins",
                self.origin(line)
            ));
        }
        self.lc
            .origins
            .insert(format!("bundles.{name}"), self.origin(line));
        self.lc.bundles.insert(name, def);
    }

    /// `add_bundle(name, scripts=[], files=[], scriptsdir='scripts', filesdir='files')`.
    fn add_bundle(
        &mut self,
        line: usize,
        args: Vec<Val>,
        kwargs: Vec<(String, Val, usize)>,
    ) -> Result<()> {
        let names = ["name", "scripts", "files", "scriptsdir", "filesdir"];
        let mut slots: Vec<Option<Val>> = vec![None; names.len()];
        if args.len() > names.len() {
            return Err(self.err(line, "add_bundle takes at most 5 arguments"));
        }
        for (i, a) in args.into_iter().enumerate() {
            slots[i] = Some(a);
        }
        for (k, v, l) in kwargs {
            let Some(i) = names.iter().position(|n| *n == k) else {
                return Err(self.err(l, format!("add_bundle has no argument '{k}'")));
            };
            slots[i] = Some(v);
        }
        let name = self.bundle_name(line, slots[0].take())?;
        for (i, dir) in [(3, "scripts"), (4, "files")] {
            if let Some(v) = slots[i].take() {
                if v != Val::Str(dir.into()) {
                    return Err(self.err(
                        line,
                        format!(
                            "add_bundle('{name}', {}={}): a bundle's {dir} are read from \
                             the layer's {dir}/ only",
                            names[i],
                            v.py()
                        ),
                    ));
                }
            }
        }
        let scripts = match slots[1].take() {
            Some(v) => self.strings(line, &format!("add_bundle('{name}') scripts"), v)?,
            None => Vec::new(),
        };
        let files = match slots[2].take() {
            Some(v) => self.strings(line, &format!("add_bundle('{name}') files"), v)?,
            None => Vec::new(),
        };
        let def = BundleDef {
            description: None,
            scripts,
            files: FilesDef::List(files),
        };
        self.put_bundle(line, name, def);
        Ok(())
    }

    /// `new_bundle(name, scriptmap, filemap=None)`: maps of target path → source path.
    fn new_bundle(
        &mut self,
        line: usize,
        args: Vec<Val>,
        kwargs: Vec<(String, Val, usize)>,
    ) -> Result<()> {
        let mut slots: Vec<Option<Val>> = vec![None; 3];
        let names = ["name", "scriptmap", "filemap"];
        if args.len() > 3 {
            return Err(self.err(line, "new_bundle takes at most 3 arguments"));
        }
        for (i, a) in args.into_iter().enumerate() {
            slots[i] = Some(a);
        }
        for (k, v, l) in kwargs {
            let Some(i) = names.iter().position(|n| *n == k) else {
                return Err(self.err(l, format!("new_bundle has no argument '{k}'")));
            };
            slots[i] = Some(v);
        }
        let name = self.bundle_name(line, slots[0].take())?;
        let mut scripts = Vec::new();
        for (target, source) in self.pairs(line, &name, "scriptmap", slots[1].take())? {
            let rel = self.inside(line, &name, &source, "scripts")?;
            let want = format!("{ORIGINAL_TARGETDIR}/{rel}");
            if target != want {
                return Err(self.err(
                    line,
                    format!(
                        "new_bundle('{name}'): script target '{target}': scripts run from \
                         {ORIGINAL_TARGETDIR}/ under their own name (here '{want}')"
                    ),
                ));
            }
            scripts.push(rel);
        }
        let mut files = BTreeMap::new();
        for (target, source) in self.pairs(line, &name, "filemap", slots[2].take())? {
            let rel = self.inside(line, &name, &source, "files")?;
            files.insert(target, rel);
        }
        let def = BundleDef {
            description: None,
            scripts,
            files: FilesDef::Map(files),
        };
        self.put_bundle(line, name, def);
        Ok(())
    }

    fn pairs(
        &self,
        line: usize,
        bundle: &str,
        what: &str,
        v: Option<Val>,
    ) -> Result<Vec<(String, String)>> {
        let items = match v {
            None | Some(Val::None) => return Ok(Vec::new()),
            Some(Val::Dict(items)) => items,
            Some(other) => {
                return Err(self.err(
                    line,
                    format!(
                        "new_bundle('{bundle}') {what} must be a dict literal, not {}",
                        other.kind()
                    ),
                ))
            }
        };
        items
            .into_iter()
            .map(|(k, v)| match (k, v) {
                (Val::Str(k), Val::Str(v)) => Ok((k, v)),
                _ => Err(self.err(
                    line,
                    format!("new_bundle('{bundle}') {what}: paths must be strings"),
                )),
            })
            .collect()
    }

    /// A source path of `new_bundle` as a name inside this layer's `sub/`.
    fn inside(&self, line: usize, bundle: &str, source: &str, sub: &str) -> Result<String> {
        let base = self.dir.join(sub);
        let p = Path::new(source);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        };
        match p.strip_prefix(&base) {
            Ok(rel) if !rel.as_os_str().is_empty() => Ok(rel.display().to_string()),
            _ => Err(self.err(
                line,
                format!(
                    "new_bundle('{bundle}'): source '{source}' is outside this layer's {}/; \
                     copy it there",
                    base.display()
                ),
            )),
        }
    }

    /// Credentials go to `[providers.NAME]` of this file's provider.
    fn finish(mut self) -> Result<LayerConfig> {
        for (key, slot) in [
            ("userid", self.userid.take()),
            ("token", self.secret.take()),
        ] {
            let Some((value, line)) = slot else { continue };
            let Some(provider) = self.lc.provider.clone() else {
                let what = if key == "token" {
                    "DEFAULT_SECRET_KEY"
                } else {
                    "DEFAULT_USERID"
                };
                return Err(self.err(
                    line,
                    format!(
                        "config.{what} is set but this file sets no DEFAULT_PROVIDER, so it is \
                         not known whose credential it is; set DEFAULT_PROVIDER here, or use \
                         -k/-u or the provider's environment variable"
                    ),
                ));
            };
            self.lc
                .providers
                .entry(provider)
                .or_default()
                .insert(key.to_string(), toml::Value::String(value));
        }
        Ok(self.lc)
    }
}

fn expanduser(s: &str) -> String {
    let home = || dirs::home_dir().map(|h| h.display().to_string());
    if s == "~" {
        return home().unwrap_or_else(|| s.to_string());
    }
    match (s.strip_prefix("~/"), home()) {
        (Some(rest), Some(h)) => format!("{h}/{rest}"),
        _ => s.to_string(),
    }
}
