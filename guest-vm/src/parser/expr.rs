//! Expressions: precedence climbing over the token list, with Python's
//! precedence (lowest first): `or`, `and`, `not`, comparisons, `+ -`,
//! `* / // %`, unary `- +`, `**`, then indexing `[]` and calls.

use crate::ast::{BinOp, CmpOp, Expr};
use crate::error::Diagnostic;
use crate::limits::MAX_EXPR_DEPTH;
use crate::tokenizer::{Tok, Token, tokenize};

/// Tokenizes and parses `chars` (part of line `line`, from column `col`).
pub(super) fn expr_from_chars(chars: &[char], line: usize, col: usize) -> Result<Expr, Diagnostic> {
    let toks = tokenize(chars, line, col)?;
    parse_tokens(&toks, line, col + chars.len())
}

/// Parses a complete expression from tokens; `end_col` is the column just
/// after the text (for "unexpected end" errors).
pub(super) fn parse_tokens(toks: &[Token], line: usize, end_col: usize) -> Result<Expr, Diagnostic> {
    let mut p = ExprParser { toks, pos: 0, depth: 0, line, end_col };
    let e = p.expr()?;
    if let Some(t) = p.peek_token() {
        return Err(p.error_at(t.col, format!("unexpected {}", t.tok.describe())));
    }
    Ok(e)
}

struct ExprParser<'a> {
    toks: &'a [Token],
    pos: usize,
    depth: usize,
    line: usize,
    end_col: usize,
}

impl ExprParser<'_> {
    fn peek_token(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn col(&self) -> usize {
        self.peek_token().map_or(self.end_col, |t| t.col)
    }
    fn error_at(&self, col: usize, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.line, col, msg)
    }
    fn error_here(&self, what: &str) -> Diagnostic {
        match self.peek_token() {
            Some(t) => self.error_at(t.col, format!("expected {what}, found {}", t.tok.describe())),
            None => self.error_at(self.end_col, format!("expected {what}, found the end of the expression")),
        }
    }
    fn bump(&mut self) {
        self.pos += 1;
    }
    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), Diagnostic> {
        if self.eat(tok) { Ok(()) } else { Err(self.error_here(what)) }
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == w)
    }

    fn enter(&mut self) -> Result<(), Diagnostic> {
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            return Err(self.error_at(self.col(), format!("expression is nested too deeply (limit {MAX_EXPR_DEPTH})")));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, Diagnostic> {
        self.enter()?;
        let r = self.or_expr();
        self.depth -= 1;
        r
    }

    fn or_expr(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.and_expr()?;
        if !self.is_word("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("or") {
            self.bump();
            items.push(self.and_expr()?);
        }
        Ok(Expr::Or(items))
    }

    fn and_expr(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.not_expr()?;
        if !self.is_word("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("and") {
            self.bump();
            items.push(self.not_expr()?);
        }
        Ok(Expr::And(items))
    }

    fn not_expr(&mut self) -> Result<Expr, Diagnostic> {
        if self.is_word("not") {
            self.bump();
            self.enter()?;
            let inner = self.not_expr();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.sum()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Eq) => CmpOp::Eq,
                Some(Tok::Ne) => CmpOp::Ne,
                Some(Tok::Lt) => CmpOp::Lt,
                Some(Tok::Gt) => CmpOp::Gt,
                Some(Tok::Le) => CmpOp::Le,
                Some(Tok::Ge) => CmpOp::Ge,
                Some(Tok::Assign) => {
                    return Err(self.error_at(self.col(), "'=' is not a comparison; use '=='"));
                }
                _ => break,
            };
            self.bump();
            rest.push((op, self.sum()?));
        }
        if rest.is_empty() { Ok(first) } else { Ok(Expr::Compare { first: Box::new(first), rest }) }
    }

    fn sum(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.term()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => BinOp::Add,
                Some(Tok::Minus) => BinOp::Sub,
                _ => break,
            };
            self.bump();
            rest.push((op, self.term()?));
        }
        Ok(chain(first, rest))
    }

    fn term(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => BinOp::Mul,
                Some(Tok::Slash) => BinOp::Div,
                Some(Tok::SlashSlash) => BinOp::FloorDiv,
                Some(Tok::Percent) => BinOp::Mod,
                _ => break,
            };
            self.bump();
            rest.push((op, self.unary()?));
        }
        Ok(chain(first, rest))
    }

    fn unary(&mut self) -> Result<Expr, Diagnostic> {
        let neg = match self.peek() {
            Some(Tok::Minus) => true,
            Some(Tok::Plus) => false,
            _ => return self.power(),
        };
        self.bump();
        self.enter()?;
        let inner = self.unary();
        self.depth -= 1;
        let inner = inner?;
        Ok(match (neg, inner) {
            // Fold negative literals so `-7` is a literal.
            (true, Expr::Int(i)) => match i.checked_neg() {
                Some(n) => Expr::Int(n),
                None => Expr::Neg(Box::new(Expr::Int(i))),
            },
            (true, Expr::Float(f)) => Expr::Float(-f),
            (true, e) => Expr::Neg(Box::new(e)),
            (false, e) => Expr::Pos(Box::new(e)),
        })
    }

    fn power(&mut self) -> Result<Expr, Diagnostic> {
        let base = self.postfix()?;
        if !self.eat(&Tok::StarStar) {
            return Ok(base);
        }
        self.enter()?;
        let exp = self.unary();
        self.depth -= 1;
        Ok(Expr::Pow(Box::new(base), Box::new(exp?)))
    }

    fn postfix(&mut self) -> Result<Expr, Diagnostic> {
        let mut e = self.atom()?;
        let saved = self.depth;
        while self.peek() == Some(&Tok::LBracket) {
            self.bump();
            self.depth += 1;
            if self.depth > MAX_EXPR_DEPTH {
                let err =
                    self.error_at(self.col(), format!("expression is nested too deeply (limit {MAX_EXPR_DEPTH})"));
                self.depth = saved;
                return Err(err);
            }
            let idx = self.expr();
            let idx = match idx {
                Ok(i) => i,
                Err(d) => {
                    self.depth = saved;
                    return Err(d);
                }
            };
            if let Err(d) = self.expect(&Tok::RBracket, "']'") {
                self.depth = saved;
                return Err(d);
            }
            e = Expr::Index(Box::new(e), Box::new(idx));
        }
        self.depth = saved;
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, Diagnostic> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_here("a value"));
        };
        let col = self.col();
        match tok {
            Tok::Int(i) => {
                self.bump();
                Ok(Expr::Int(i))
            }
            Tok::Float(f) => {
                self.bump();
                Ok(Expr::Float(f))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Str(s.into()))
            }
            Tok::Template(parts) => {
                self.bump();
                Ok(Expr::Template(parts))
            }
            Tok::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "True" | "true" => return Ok(Expr::Bool(true)),
                    "False" | "false" => return Ok(Expr::Bool(false)),
                    "None" | "null" => return Ok(Expr::Null),
                    "and" | "or" | "not" | "function" | "return" => {
                        return Err(self.error_at(col, format!("unexpected keyword '{name}'")));
                    }
                    _ => {}
                }
                if self.eat(&Tok::LParen) {
                    let args = self.items(&Tok::RParen, "')'")?;
                    return Ok(Expr::Call { name, args });
                }
                Ok(Expr::Name(name))
            }
            Tok::LParen => {
                self.bump();
                let e = self.expr()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::LBracket => {
                self.bump();
                Ok(Expr::List(self.items(&Tok::RBracket, "']'")?))
            }
            Tok::LBrace => {
                self.bump();
                let mut pairs = Vec::new();
                loop {
                    if self.eat(&Tok::RBrace) {
                        break;
                    }
                    let k = self.expr()?;
                    self.expect(&Tok::Colon, "':'")?;
                    let v = self.expr()?;
                    pairs.push((k, v));
                    if self.eat(&Tok::RBrace) {
                        break;
                    }
                    self.expect(&Tok::Comma, "',' or '}'")?;
                }
                Ok(Expr::Dict(pairs))
            }
            _ => Err(self.error_here("a value")),
        }
    }

    /// Comma-separated expressions up to `close` (trailing comma allowed).
    fn items(&mut self, close: &Tok, what: &str) -> Result<Vec<Expr>, Diagnostic> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.expr()?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(&Tok::Comma) {
                return Err(self.error_here(&format!("',' or {what}")));
            }
        }
    }
}

fn chain(first: Expr, rest: Vec<(BinOp, Expr)>) -> Expr {
    if rest.is_empty() { first } else { Expr::Chain { first: Box::new(first), rest } }
}
