//! Script templates, with the original tool's markers: a comment carrying
//! `provision-template-type: ENGINE` makes a script a template. The marker is found with the
//! original's own regex (`#.+provision-template-type:\W*(?P<type>[\w-]+)`): the first line that
//! has one decides, and on that line the last marker wins (the regex is greedy).
//!
//! - `tera`: Tera, strict (an undefined variable is an error);
//! - `format-string`: Python's `str.format` — `{name}`, `{name!r}`, `{name:>20}`, `{{`/`}}`;
//!   undefined is an error, and what Python would refuse for a string is refused here with its
//!   line, column and reason;
//! - `template-string`: Python's `string.Template.safe_substitute` — `$name`, `${name}`, `$$`;
//!   anything undefined or not an identifier (`$2`, `${x:-y}`) is left as is. Only the names
//!   in [`Vars::bare`] are replaced (what the user defined), so a shell variable such as
//!   `$image` keeps its meaning.
//!
//! Every variable is also reachable as `provision.NAME` (`${provision.NAME}`,
//! `{provision.NAME}`, `{{ provision.NAME }}`): no shell accepts that as a variable name, so it
//! never collides with one. Rendering happens while the plan is built, so errors surface
//! before anything is created.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

/// The original's `config.TEMPLATE_RE`, with Python 2's ASCII `\w`/`\W` spelled out.
const MARKER_RE: &str = "#.+provision-template-type:[^A-Za-z0-9_]*(?P<type>[A-Za-z0-9_-]+)";
/// The namespace under which every variable is reachable without colliding with the shell.
pub const NAMESPACE: &str = "provision";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    Tera,
    FormatString,
    TemplateString,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Tera => "tera",
            Engine::FormatString => "format-string",
            Engine::TemplateString => "template-string",
        })
    }
}

/// A template error: the 1-based line (and column) it is about, when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl TemplateError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        TemplateError {
            line: Some(line),
            column: None,
            message: message.into(),
        }
    }

    fn at_col(line: usize, column: usize, message: impl Into<String>) -> Self {
        TemplateError {
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

/// Template variables: strings, plus `bundles` which Tera also sees as a list.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// Every variable: user-defined and built-in.
    pub strings: BTreeMap<String, String>,
    pub bundles: Vec<String>,
    /// The names a `template-string` script's bare `$name` may replace.
    pub bare: BTreeSet<String>,
    /// `[vars]` values TOML typed as numbers, booleans, arrays or tables: tera receives these
    /// as such (`{% for p in packages %}`); the other engines see `strings`.
    pub typed: BTreeMap<String, toml::Value>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.strings.get(name).map(String::as_str)
    }

    /// `provision.NAME` → NAME's value.
    fn namespaced(&self, name: &str) -> Option<&str> {
        let rest = name.strip_prefix(NAMESPACE)?.strip_prefix('.')?;
        self.get(rest)
    }
}

fn marker_re() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(MARKER_RE).expect("valid regex"))
}

/// Finds the marker as the original did: `Ok(None)` for a plain script, an error for an
/// engine name this build does not have (the original raised KeyError).
pub fn detect(text: &str) -> Result<Option<Engine>, TemplateError> {
    let Some(caps) = marker_re().captures(text) else {
        return Ok(None);
    };
    let m = caps.name("type").expect("group");
    match m.as_str() {
        "tera" => Ok(Some(Engine::Tera)),
        "format-string" => Ok(Some(Engine::FormatString)),
        "template-string" => Ok(Some(Engine::TemplateString)),
        other => Err(TemplateError::at(
            text[..m.start()].matches('\n').count() + 1,
            format!(
                "unsupported template type '{other}' (use tera, format-string or template-string)"
            ),
        )),
    }
}

/// Renders `text` with `engine`.
pub fn render(engine: Engine, text: &str, vars: &Vars) -> Result<String, TemplateError> {
    match engine {
        Engine::Tera => render_tera(text, vars),
        Engine::FormatString => render_format_string(text, vars),
        Engine::TemplateString => Ok(render_template_string(text, vars)),
    }
}

fn render_tera(text: &str, vars: &Vars) -> Result<String, TemplateError> {
    let mut ctx = tera::Context::new();
    let mut all: BTreeMap<&str, toml::Value> = BTreeMap::new();
    for (k, v) in &vars.strings {
        let v = vars
            .typed
            .get(k)
            .cloned()
            .unwrap_or_else(|| toml::Value::String(v.clone()));
        ctx.insert(k.as_str(), &v);
        all.insert(k.as_str(), v);
    }
    ctx.insert("bundles", &vars.bundles);
    ctx.insert(NAMESPACE, &all);
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    if let Err(e) = tera.add_raw_template("script", text) {
        return Err(tera_error(text, &e));
    }
    tera.render("script", &ctx)
        .map_err(|e| tera_error(text, &e))
}

/// One line from Tera's error chain; the line number from its parse error, or from the first
/// line that mentions an undefined variable.
fn tera_error(text: &str, err: &tera::Error) -> TemplateError {
    let mut parts = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    let full = parts.join(": ");
    let mut line = None;
    if let Some(idx) = full.find("-->") {
        let digits: String = full[idx + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        line = digits.parse().ok();
    }
    if line.is_none() {
        if let Some(var) = between(&full, "Variable `", "` not found") {
            line = text.lines().position(|l| l.contains(var)).map(|i| i + 1);
        }
    }
    let message = parts
        .last()
        .map(|m| {
            m.lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or(m)
                .trim()
                .trim_start_matches("= ")
                .to_string()
        })
        .unwrap_or(full)
        .replace(" while rendering 'script'", "");
    TemplateError {
        line,
        column: None,
        message,
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let a = s.find(start)? + start.len();
    let b = s[a..].find(end)? + a;
    Some(&s[a..b])
}

/// Python's `str.format(**vars)` on the whole text, for string values.
fn render_format_string(text: &str, vars: &Vars) -> Result<String, TemplateError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut line, mut col) = (1usize, 1usize);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' if chars.get(i + 1) == Some(&'{') => {
                out.push('{');
                i += 2;
                col += 2;
                continue;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                out.push('}');
                i += 2;
                col += 2;
                continue;
            }
            '{' => {
                // the field runs to the '}' that closes it (a format spec may nest one level)
                let mut depth = 1;
                let mut j = i + 1;
                while j < chars.len() && depth > 0 {
                    match chars[j] {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth > 0 {
                    return Err(TemplateError::at_col(
                        line,
                        col,
                        "'{' without a closing '}' (write {{ for a literal brace)",
                    ));
                }
                let field: String = chars[i + 1..j - 1].iter().collect();
                out.push_str(
                    &format_field(&field, vars)
                        .map_err(|(off, m)| TemplateError::at_col(line, col + 1 + off, m))?,
                );
                let consumed = j - i;
                line += field.matches('\n').count();
                col += consumed;
                i = j;
                continue;
            }
            '}' => {
                return Err(TemplateError::at_col(
                    line,
                    col,
                    "single '}' (write }} for a literal brace)",
                ))
            }
            '\n' => {
                line += 1;
                col = 0;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
        col += 1;
    }
    Ok(out)
}

/// One replacement field (`name`, `name!r`, `name:>20`, `provision.name`); an error is the
/// character offset in `field` and the reason.
fn format_field(field: &str, vars: &Vars) -> Result<String, (usize, String)> {
    let name_end = field.find(['!', ':']).unwrap_or(field.len());
    let name = &field[..name_end];
    let value = if is_identifier(name) {
        vars.get(name)
            .ok_or_else(|| (0, format!("undefined variable '{name}'")))?
    } else if let Some(v) = vars.namespaced(name) {
        v
    } else if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
        return Err((
            0,
            format!("'{{{name}}}' is a positional field; variables are named, as {{name}} (write {{{{ and }}}} for literal braces)"),
        ));
    } else if name.starts_with(&format!("{NAMESPACE}.")) {
        return Err((0, format!("undefined variable '{name}'")));
    } else {
        return Err((
            0,
            format!("'{{{field}}}' is not a variable name: attribute and index access are not supported (write {{{{ and }}}} for literal braces)"),
        ));
    };
    let mut rest = &field[name_end..];
    let mut offset = name_end;
    let mut value = value.to_string();
    if let Some(conv) = rest.strip_prefix('!') {
        let flag: String = conv.chars().take(1).collect();
        match flag.as_str() {
            "r" => value = python_repr(&value),
            "s" => {}
            "" => {
                return Err((
                    offset + 1,
                    "'!' at the end of a field: expected a conversion (r or s)".into(),
                ))
            }
            other => {
                return Err((
                    offset + 1,
                    format!(
                        "unknown conversion '!{other}' (the original's Python accepted !r and !s)"
                    ),
                ))
            }
        }
        rest = &conv[flag.len()..];
        offset += 1 + flag.len();
        if !rest.is_empty() && !rest.starts_with(':') {
            return Err((offset, "expected ':' or '}' after the conversion".into()));
        }
    }
    match rest.strip_prefix(':') {
        None => Ok(value),
        Some(spec) => apply_spec(&value, spec).map_err(|(o, m)| (offset + 1 + o, m)),
    }
}

/// Python's format-spec mini-language for a string:
/// `[[fill]align][sign][z][#][0][width][grouping][.precision][type]`.
fn apply_spec(value: &str, spec: &str) -> Result<String, (usize, String)> {
    if let Some(p) = spec.find('{') {
        return Err((
            p,
            "a replacement field inside a format spec is not supported".into(),
        ));
    }
    let cs: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
    let (mut fill, mut align, mut explicit_fill) = (' ', None, false);
    if cs.len() >= 2 && is_align(cs[1]) {
        fill = cs[0];
        align = Some(cs[1]);
        explicit_fill = true;
        i = 2;
    } else if !cs.is_empty() && is_align(cs[0]) {
        align = Some(cs[0]);
        i = 1;
    }
    let not_for_strings = |i: usize, what: &str| {
        Err((
            i,
            format!("{what} is not allowed for a string (variables are strings; the original's Python 2 refused it too)"),
        ))
    };
    if align == Some('=') {
        return not_for_strings(i - 1, "'=' alignment");
    }
    if let Some(&c) = cs.get(i) {
        if matches!(c, '+' | '-' | ' ') {
            return not_for_strings(i, "a sign");
        }
        if c == '#' {
            return not_for_strings(i, "the alternate form '#'");
        }
    }
    if cs.get(i) == Some(&'0') {
        // Python 2: '0' means '=' alignment unless an alignment is given; then it is the fill
        if align.is_none() {
            return not_for_strings(i, "'0' (zero padding, which means '=' alignment)");
        }
        if !explicit_fill {
            fill = '0';
        }
        i += 1;
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < cs.len() && cs[*i].is_ascii_digit() {
            *i += 1;
        }
        cs[s..*i].iter().collect::<String>()
    };
    let width: usize = digits(&mut i).parse().unwrap_or(0);
    if matches!(cs.get(i), Some(',' | '_')) {
        return not_for_strings(i, "a thousands separator");
    }
    let mut precision = None;
    if cs.get(i) == Some(&'.') {
        i += 1;
        let p = digits(&mut i);
        if p.is_empty() {
            return Err((i, "'.' must be followed by a precision".into()));
        }
        precision = Some(p.parse::<usize>().unwrap_or(usize::MAX));
    }
    match cs.get(i) {
        None | Some('s') if i + 1 >= cs.len() => {}
        Some(t) if i + 1 == cs.len() => {
            return Err((
                i,
                format!(
                    "format type '{t}' needs a number; variables are strings (only 's' applies)"
                ),
            ))
        }
        _ => return Err((i, "invalid format spec".into())),
    }
    let mut v: String = match precision {
        Some(p) => value.chars().take(p).collect(),
        None => value.to_string(),
    };
    let len = v.chars().count();
    if width > len {
        let pad = width - len;
        let (left, right) = match align.unwrap_or('<') {
            '>' => (pad, 0),
            '^' => (pad / 2, pad - pad / 2),
            _ => (0, pad),
        };
        let f = |n: usize| std::iter::repeat(fill).take(n).collect::<String>();
        v = format!("{}{v}{}", f(left), f(right));
    }
    Ok(v)
}

/// Python 2's `repr()` of a str (the original ran on Python 2): single quotes unless the text
/// has `'` and no `"`.
fn python_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            // Python 2's str is bytes: everything not printable ASCII is \xNN per byte
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// `string.Template(text).safe_substitute(vars)`, seeing only the names in `vars.bare`
/// (and every variable as `${provision.NAME}`).
fn render_template_string(text: &str, vars: &Vars) -> String {
    let bare = |name: &str| {
        if vars.bare.contains(name) {
            vars.get(name)
        } else {
            None
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                let name = &braced[..end];
                let value = if is_identifier(name) {
                    bare(name)
                } else {
                    vars.namespaced(name)
                };
                if let Some(v) = value {
                    out.push_str(v);
                    rest = &braced[end + 1..];
                    continue;
                }
            }
            out.push('$');
            rest = after;
            continue;
        }
        let len = identifier_prefix(after);
        if len > 0 {
            if let Some(v) = bare(&after[..len]) {
                out.push_str(v);
                rest = &after[len..];
                continue;
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Python identifiers as `string.Template` sees them: `[_a-zA-Z][_a-zA-Z0-9]*`.
fn is_identifier(s: &str) -> bool {
    !s.is_empty() && identifier_prefix(s) == s.len()
}

fn identifier_prefix(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars {
            strings: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bundles: vec!["dev".into(), "tz".into()],
            bare: pairs.iter().map(|(k, _)| k.to_string()).collect(),
            typed: BTreeMap::new(),
        }
    }

    #[test]
    fn no_marker_is_plain() {
        assert_eq!(detect("#!/bin/sh\necho {x} $y\n").unwrap(), None);
    }

    #[test]
    fn first_marker_wins_across_lines() {
        let t = "#!/bin/sh\n# provision-template-type: template-string\n# provision-template-type: tera\n";
        assert_eq!(detect(t).unwrap(), Some(Engine::TemplateString));
    }

    #[test]
    fn last_marker_wins_on_one_line_as_the_originals_greedy_regex() {
        let t = "# provision-template-type: format-string provision-template-type: tera\n";
        assert_eq!(detect(t).unwrap(), Some(Engine::Tera));
    }

    #[test]
    fn marker_must_be_in_a_comment() {
        assert_eq!(
            detect("echo provision-template-type: tera\n").unwrap(),
            None
        );
    }

    #[test]
    fn unsupported_marker_is_an_error_with_line() {
        let err = detect("#!/bin/sh\n# provision-template-type: jinja2\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("jinja2"), "{}", err.message);
    }

    #[test]
    fn template_string_substitutes_and_leaves_shell_alone() {
        let src = "f() { local a=$1; echo \"${a}\"; }\nawk '{print $2}' x\necho $name ${name}x $$ $undefined ${HOME:-/root} $\n";
        let out = render(Engine::TemplateString, src, &vars(&[("name", "web1")])).unwrap();
        assert_eq!(
            out,
            "f() { local a=$1; echo \"${a}\"; }\nawk '{print $2}' x\necho web1 web1x $ $undefined ${HOME:-/root} $\n"
        );
    }

    #[test]
    fn format_string_substitutes_and_escapes() {
        let out = render(
            Engine::FormatString,
            "echo {name} {{literal}}\n",
            &vars(&[("name", "n1")]),
        )
        .unwrap();
        assert_eq!(out, "echo n1 {literal}\n");
    }

    #[test]
    fn format_string_undefined_is_an_error_with_line() {
        let err = render(Engine::FormatString, "a\necho {nope}\n", &vars(&[])).unwrap_err();
        assert_eq!(
            err,
            TemplateError::at_col(2, 7, "undefined variable 'nope'")
        );
    }

    #[test]
    fn format_string_rejects_shell_braces() {
        let err = render(Engine::FormatString, "awk '{print $2}'\n", &vars(&[])).unwrap_err();
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn tera_renders_strings_and_bundle_list() {
        let out = render(
            Engine::Tera,
            "echo {{ name }}{% for b in bundles %} {{ b }}{% endfor %}\n",
            &vars(&[("name", "n1")]),
        )
        .unwrap();
        assert_eq!(out, "echo n1 dev tz\n");
    }

    #[test]
    fn tera_is_strict_and_names_the_line() {
        let err = render(
            Engine::Tera,
            "#!/bin/sh\n\necho {{ missing_var }}\n",
            &vars(&[]),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("missing_var"), "{}", err.message);
    }

    #[test]
    fn tera_syntax_error_names_the_line() {
        let err = render(Engine::Tera, "ok\n{% if %}\n", &vars(&[])).unwrap_err();
        assert_eq!(err.line, Some(2), "{err:?}");
    }
}
