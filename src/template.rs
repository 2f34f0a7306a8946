//! Script templates, with the original tool's markers: a comment line carrying
//! `provision-template-type: ENGINE` makes a script a template. The first marker wins.
//!
//! - `tera`: Tera, strict (an undefined variable is an error);
//! - `format-string`: Python's `str.format` — `{name}`, `{{`/`}}` escape, undefined is an error;
//! - `template-string`: Python's `string.Template.safe_substitute` — `$name`, `${name}`, `$$`;
//!   anything undefined or not an identifier (`$2`, `${x:-y}`) is left as is.
//!
//! Rendering happens while the plan is built, so errors surface before anything is created.

use std::collections::BTreeMap;
use std::fmt;

const MARKER: &str = "provision-template-type:";

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

/// A template error: the 1-based line it is about (when known) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub line: Option<usize>,
    pub message: String,
}

impl TemplateError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        TemplateError {
            line: Some(line),
            message: message.into(),
        }
    }
}

/// Template variables: strings, plus `bundles` which Tera also sees as a list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    pub strings: BTreeMap<String, String>,
    pub bundles: Vec<String>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.strings.get(name).map(String::as_str)
    }
}

/// Finds the first marker in `text`: `Ok(None)` for a plain script, an error for an
/// unsupported engine name.
pub(crate) fn detect(text: &str) -> Result<Option<Engine>, TemplateError> {
    for (i, line) in text.lines().enumerate() {
        let Some(hash) = line.find('#') else { continue };
        let Some(pos) = line[hash..].find(MARKER) else {
            continue;
        };
        let rest = line[hash + pos + MARKER.len()..].trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        return match name.as_str() {
            "tera" => Ok(Some(Engine::Tera)),
            "format-string" => Ok(Some(Engine::FormatString)),
            "template-string" => Ok(Some(Engine::TemplateString)),
            other => Err(TemplateError::at(
                i + 1,
                format!(
                    "unsupported template type '{other}' (use tera, format-string or template-string)"
                ),
            )),
        };
    }
    Ok(None)
}

/// Renders `text` with `engine`.
pub(crate) fn render(engine: Engine, text: &str, vars: &Vars) -> Result<String, TemplateError> {
    match engine {
        Engine::Tera => render_tera(text, vars),
        Engine::FormatString => render_format_string(text, vars),
        Engine::TemplateString => Ok(render_template_string(text, vars)),
    }
}

fn render_tera(text: &str, vars: &Vars) -> Result<String, TemplateError> {
    let mut ctx = tera::Context::new();
    for (k, v) in &vars.strings {
        ctx.insert(k.as_str(), v);
    }
    ctx.insert("bundles", &vars.bundles);
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
    TemplateError { line, message }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let a = s.find(start)? + start.len();
    let b = s[a..].find(end)? + a;
    Some(&s[a..b])
}

fn render_format_string(text: &str, vars: &Vars) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let lineno = i + 1;
        let mut chars = line.char_indices().peekable();
        while let Some((pos, c)) = chars.next() {
            match c {
                '{' if matches!(chars.peek(), Some((_, '{'))) => {
                    chars.next();
                    out.push('{');
                }
                '}' if matches!(chars.peek(), Some((_, '}'))) => {
                    chars.next();
                    out.push('}');
                }
                '{' => {
                    let rest = &line[pos + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(TemplateError::at(
                            lineno,
                            "'{' without a closing '}' (write {{ for a literal brace)",
                        ));
                    };
                    let name = &rest[..end];
                    if !is_identifier(name) {
                        return Err(TemplateError::at(
                            lineno,
                            format!("'{{{name}}}' is not a variable name (write {{{{ and }}}} for literal braces)"),
                        ));
                    }
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            return Err(TemplateError::at(
                                lineno,
                                format!("undefined variable '{name}'"),
                            ))
                        }
                    }
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(TemplateError::at(
                        lineno,
                        "single '}' (write }} for a literal brace)",
                    ))
                }
                c => out.push(c),
            }
        }
    }
    Ok(out)
}

fn render_template_string(text: &str, vars: &Vars) -> String {
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
                if is_identifier(name) {
                    if let Some(v) = vars.get(name) {
                        out.push_str(v);
                        rest = &braced[end + 1..];
                        continue;
                    }
                }
            }
            out.push('$');
            rest = after;
            continue;
        }
        let len = identifier_prefix(after);
        if len > 0 {
            if let Some(v) = vars.get(&after[..len]) {
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
    fn first_marker_wins_on_one_line() {
        let t = "# provision-template-type: format-string provision-template-type: tera\n";
        assert_eq!(detect(t).unwrap(), Some(Engine::FormatString));
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
        assert_eq!(err, TemplateError::at(2, "undefined variable 'nope'"));
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
