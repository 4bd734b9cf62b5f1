//! Tokenizer: turns the characters of one expression (or one strict
//! statement such as a `function` header) into [`Token`]s.
//!
//! Scripts are line-oriented, so the tokenizer works on one slice of a line
//! at a time; `base_col` is the 1-based column of the slice's first char, so
//! every token and every error carries its real position.

use crate::error::Diagnostic;

/// A piece of a template string (`` `id ${id}` ``); the parts go into the
/// syntax tree as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Text(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Template(Vec<TemplatePart>),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Colon,
    Assign,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Plus,
    Minus,
    Star,
    StarStar,
    Slash,
    SlashSlash,
    Percent,
}

impl Tok {
    /// How the token is shown in error messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Int(i) => format!("'{i}'"),
            Tok::Float(f) => format!("'{}'", crate::value::float_text(*f)),
            Tok::Str(_) => "a string".to_string(),
            Tok::Template(_) => "a template string".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Assign => "=",
            Tok::Eq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Gt => ">",
            Tok::Le => "<=",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::StarStar => "**",
            Tok::Slash => "/",
            Tok::SlashSlash => "//",
            Tok::Percent => "%",
            _ => "?",
        }
    }
}

/// A token and its 1-based column.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub col: usize,
}

pub fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

pub fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Whether `s` is a valid identifier.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

/// Tokenizes `chars` (part of line `line`, starting at column `base_col`).
pub fn tokenize(chars: &[char], line: usize, base_col: usize) -> Result<Vec<Token>, Diagnostic> {
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    let err = |i: usize, msg: String| Diagnostic::new(line, base_col + i, msg);
    while let Some(c) = at(i) {
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if is_ident_start(c) {
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            Tok::Ident(chars.get(start..i).unwrap_or_default().iter().collect())
        } else if c.is_ascii_digit() {
            let (tok, next) = number(chars, i).map_err(|m| err(start, m))?;
            i = next;
            tok
        } else if c == '"' || c == '\'' {
            let (s, next) = string(chars, i, c).map_err(|(p, m)| err(p, m))?;
            i = next;
            Tok::Str(s)
        } else if c == '`' {
            let (parts, next) = template(chars, i).map_err(|(p, m)| err(p, m))?;
            i = next;
            Tok::Template(parts)
        } else {
            let next = at(i + 1);
            let (tok, len) = match (c, next) {
                ('*', Some('*')) => (Tok::StarStar, 2),
                ('/', Some('/')) => (Tok::SlashSlash, 2),
                ('=', Some('=')) => (Tok::Eq, 2),
                ('!', Some('=')) => (Tok::Ne, 2),
                ('<', Some('=')) => (Tok::Le, 2),
                ('>', Some('=')) => (Tok::Ge, 2),
                ('*', _) => (Tok::Star, 1),
                ('/', _) => (Tok::Slash, 1),
                ('=', _) => (Tok::Assign, 1),
                ('<', _) => (Tok::Lt, 1),
                ('>', _) => (Tok::Gt, 1),
                ('+', _) => (Tok::Plus, 1),
                ('-', _) => (Tok::Minus, 1),
                ('%', _) => (Tok::Percent, 1),
                ('(', _) => (Tok::LParen, 1),
                (')', _) => (Tok::RParen, 1),
                ('[', _) => (Tok::LBracket, 1),
                (']', _) => (Tok::RBracket, 1),
                ('{', _) => (Tok::LBrace, 1),
                ('}', _) => (Tok::RBrace, 1),
                (',', _) => (Tok::Comma, 1),
                (':', _) => (Tok::Colon, 1),
                _ => return Err(err(i, format!("unexpected character '{c}'"))),
            };
            i += len;
            tok
        };
        out.push(Token { tok, col: base_col + start });
    }
    Ok(out)
}

/// A number literal starting at `i`: `42`, `3.14`, `1e5`, `2.5E-3`.
fn number(chars: &[char], mut i: usize) -> Result<(Tok, usize), String> {
    let at = |i: usize| chars.get(i).copied();
    let start = i;
    while at(i).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
    }
    let mut is_float = false;
    if at(i) == Some('.') && at(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        is_float = true;
        i += 1;
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    if matches!(at(i), Some('e') | Some('E')) {
        let mut j = i + 1;
        if matches!(at(j), Some('+') | Some('-')) {
            j += 1;
        }
        if at(j).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            i = j;
            while at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
        }
    }
    if at(i).is_some_and(is_ident_char) {
        return Err("invalid number literal".to_string());
    }
    let text: String = chars.get(start..i).unwrap_or_default().iter().collect();
    if is_float {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok((Tok::Float(f), i)),
            _ => Err(format!("float literal '{text}' is out of range")),
        }
    } else {
        if text.len() > 1 && text.starts_with('0') {
            return Err(format!("leading zeros are not allowed in '{text}'"));
        }
        match text.parse::<i64>() {
            Ok(v) => Ok((Tok::Int(v), i)),
            Err(_) => Err(format!("integer literal '{text}' is too large")),
        }
    }
}

/// The escape `\c` inside a string or template. Unknown escapes keep the
/// backslash (as in Python), so regex text like `"\d+"` survives.
fn escape(c: char, out: &mut String) {
    match c {
        'n' => out.push('\n'),
        't' => out.push('\t'),
        'r' => out.push('\r'),
        '0' => out.push('\0'),
        '\\' | '"' | '\'' | '`' | '$' => out.push(c),
        other => {
            out.push('\\');
            out.push(other);
        }
    }
}

/// A quoted string starting at `i` (the quote). Returns the text and the
/// index after the closing quote.
fn string(chars: &[char], i: usize, quote: char) -> Result<(String, usize), (usize, String)> {
    let mut out = String::new();
    let mut j = i + 1;
    loop {
        match chars.get(j).copied() {
            None => return Err((i, "unterminated string".to_string())),
            Some('\\') => match chars.get(j + 1).copied() {
                Some(c) => {
                    escape(c, &mut out);
                    j += 2;
                }
                None => return Err((i, "unterminated string".to_string())),
            },
            Some(c) if c == quote => return Ok((out, j + 1)),
            Some(c) => {
                out.push(c);
                j += 1;
            }
        }
    }
}

/// A back-quoted template starting at `i`: text and `${name}` parts.
fn template(chars: &[char], i: usize) -> Result<(Vec<TemplatePart>, usize), (usize, String)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut j = i + 1;
    loop {
        match chars.get(j).copied() {
            None => return Err((i, "unterminated template string".to_string())),
            Some('\\') => match chars.get(j + 1).copied() {
                Some(c) => {
                    escape(c, &mut text);
                    j += 2;
                }
                None => return Err((i, "unterminated template string".to_string())),
            },
            Some('`') => {
                if !text.is_empty() {
                    parts.push(TemplatePart::Text(text));
                }
                return Ok((parts, j + 1));
            }
            Some('$') if chars.get(j + 1) == Some(&'{') => {
                let open = j;
                let mut k = j + 2;
                while chars.get(k).is_some_and(|&c| c != '}' && c != '`') {
                    k += 1;
                }
                if chars.get(k) != Some(&'}') {
                    return Err((open, "unclosed '${' in template string".to_string()));
                }
                let name: String = chars.get(j + 2..k).unwrap_or_default().iter().collect();
                let name = name.trim();
                if !is_identifier(name) {
                    return Err((open, format!("template placeholder '${{{name}}}' must be a variable name")));
                }
                if !text.is_empty() {
                    parts.push(TemplatePart::Text(std::mem::take(&mut text)));
                }
                parts.push(TemplatePart::Var(name.to_string()));
                j = k + 1;
            }
            Some(c) => {
                text.push(c);
                j += 1;
            }
        }
    }
}

/// Whether a quote at `i` opens a string, for the lenient scanners that
/// split command arguments and find comments: a quote directly after a
/// letter or digit (as in `it's`) is plain text.
pub fn opens_string(chars: &[char], i: usize) -> bool {
    match i.checked_sub(1).and_then(|p| chars.get(p)) {
        None => true,
        Some(&prev) => !is_ident_char(prev),
    }
}

/// Index after the string or template starting at `i`, or `None` when it
/// is not terminated on this line.
pub fn skip_string(chars: &[char], i: usize) -> Option<usize> {
    let quote = *chars.get(i)?;
    let mut j = i + 1;
    loop {
        match chars.get(j).copied() {
            None => return None,
            Some('\\') => j += 2,
            Some(c) if c == quote => return Some(j + 1),
            Some(_) => j += 1,
        }
    }
}
