//! A tokenizer for the small Python subset of the original's `__init__.py` config files
//! (see [`super::pyinit`]): names, string and integer literals, brackets and a few operators,
//! grouped into logical lines the way Python joins them (inside brackets, after a backslash).
//! Nothing is ever executed; anything it cannot read is an error naming file and line.

/// One token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Name(String),
    Str(String),
    Int(i64),
    /// Punctuation and operators: `( ) [ ] { } , : . = += -` and anything else, verbatim.
    Op(String),
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

/// A logical line: its indentation (columns before the first token) and its tokens.
#[derive(Debug, Clone)]
pub struct Line {
    pub indent: usize,
    pub line: usize,
    pub toks: Vec<Token>,
}

/// Splits `text` into logical lines; an error is `(line, message)`.
pub fn lines(text: &str) -> Result<Vec<Line>, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Line> = Vec::new();
    let mut cur: Option<Line> = None;
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut col = 0usize;
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                if depth == 0 {
                    if let Some(l) = cur.take() {
                        out.push(l);
                    }
                }
                line += 1;
                col = 0;
                i += 1;
                continue;
            }
            ' ' | '\t' | '\r' | '\x0c' => {
                col += if c == '\t' { 8 - col % 8 } else { 1 };
                i += 1;
                continue;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
                col = 0;
                continue;
            }
            _ => {}
        }
        let start_line = line;
        let start_col = col;
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            let next = chars.get(j).copied();
            if matches!(next, Some('\'' | '"')) && is_string_prefix(&word) {
                let raw = word.to_ascii_lowercase().contains('r');
                let (s, end, newlines) = string(&chars, j, raw).map_err(|m| (line, m))?;
                line += newlines;
                i = end;
                Tok::Str(s)
            } else {
                i = j;
                Tok::Name(word)
            }
        } else if c == '\'' || c == '"' {
            let (s, end, newlines) = string(&chars, i, false).map_err(|m| (line, m))?;
            line += newlines;
            i = end;
            Tok::Str(s)
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let lit: String = chars[i..j].iter().filter(|c| **c != '_').collect();
            let lit = lit.trim_end_matches(['L', 'l']);
            i = j;
            match lit.parse::<i64>() {
                Ok(n) => Tok::Int(n),
                Err(_) => return Err((line, format!("number literal `{lit}`"))),
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["+=", "-=", "==", "!=", "**", "<=", ">="].contains(&two.as_str()) {
                two
            } else {
                c.to_string()
            };
            i += op.chars().count();
            match op.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
            Tok::Op(op)
        };
        col += 1;
        let l = cur.get_or_insert_with(|| Line {
            indent: start_col,
            line: start_line,
            toks: Vec::new(),
        });
        l.toks.push(Token {
            tok,
            line: start_line,
        });
    }
    if let Some(l) = cur.take() {
        out.push(l);
    }
    Ok(out)
}

fn is_string_prefix(w: &str) -> bool {
    matches!(
        w.to_ascii_lowercase().as_str(),
        "r" | "u" | "b" | "ur" | "br" | "rb"
    )
}

/// A string literal starting at `i` (the quote): its value, the index after it, and how many
/// newlines it spans.
fn string(chars: &[char], i: usize, raw: bool) -> Result<(String, usize, usize), String> {
    let q = chars[i];
    let triple = chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q);
    let mut j = if triple { i + 3 } else { i + 1 };
    let mut out = String::new();
    let mut newlines = 0;
    loop {
        let Some(&c) = chars.get(j) else {
            return Err("a string literal that is never closed".into());
        };
        if c == q {
            if !triple {
                return Ok((out, j + 1, newlines));
            }
            if chars.get(j + 1) == Some(&q) && chars.get(j + 2) == Some(&q) {
                return Ok((out, j + 3, newlines));
            }
        }
        if c == '\n' {
            if !triple {
                return Err("a string literal that is never closed".into());
            }
            newlines += 1;
        }
        if c == '\\' && j + 1 < chars.len() {
            let e = chars[j + 1];
            if raw {
                out.push('\\');
                out.push(e);
                if e == '\n' {
                    newlines += 1;
                }
                j += 2;
                continue;
            }
            j += 2;
            match e {
                '\n' => newlines += 1,
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                '\\' | '\'' | '"' => out.push(e),
                'x' => {
                    let hex: String = chars.get(j..j + 2).unwrap_or_default().iter().collect();
                    let v = u32::from_str_radix(&hex, 16)
                        .map_err(|_| format!("bad escape `\\x{hex}` in a string literal"))?;
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    j += 2;
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            continue;
        }
        out.push(c);
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_lines_inside_brackets_and_after_backslash() {
        let ls = lines("a = [1,\n  2] # c\nb = \\\n 'x'\n").unwrap();
        assert_eq!(ls.len(), 2);
        assert_eq!(ls[0].toks.len(), 7);
        assert_eq!(ls[1].line, 3);
        assert_eq!(ls[1].toks[2].tok, Tok::Str("x".into()));
    }

    #[test]
    fn strings_escapes_prefixes_and_triple_quotes() {
        let ls = lines("x = r'\\n' u\"a\\tb\" '''l1\nl2'''\ny = 1\n").unwrap();
        assert_eq!(ls[0].toks[2].tok, Tok::Str("\\n".into()));
        assert_eq!(ls[0].toks[3].tok, Tok::Str("a\tb".into()));
        assert_eq!(ls[0].toks[4].tok, Tok::Str("l1\nl2".into()));
        assert_eq!(ls[1].line, 3);
    }

    #[test]
    fn indentation_is_the_first_column() {
        let ls = lines("def init(c):\n    c.X = 1\n").unwrap();
        assert_eq!((ls[0].indent, ls[1].indent), (0, 4));
    }
}
