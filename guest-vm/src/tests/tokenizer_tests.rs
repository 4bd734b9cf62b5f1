use crate::ast::TemplatePart;
use crate::tokenizer::{Tok, tokenize};

fn toks(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    tokenize(&chars, 1, 1).map(|v| v.into_iter().map(|t| t.tok).collect()).unwrap_or_default()
}

#[test]
fn numbers_and_operators() {
    assert_eq!(
        toks("1 + 2.5 ** 3 // 4 % 5"),
        vec![
            Tok::Int(1),
            Tok::Plus,
            Tok::Float(2.5),
            Tok::StarStar,
            Tok::Int(3),
            Tok::SlashSlash,
            Tok::Int(4),
            Tok::Percent,
            Tok::Int(5)
        ]
    );
    assert_eq!(toks("1e3"), vec![Tok::Float(1000.0)]);
    assert_eq!(
        toks("a<=b!=c"),
        vec![Tok::Ident("a".into()), Tok::Le, Tok::Ident("b".into()), Tok::Ne, Tok::Ident("c".into())]
    );
}

#[test]
fn strings_and_escapes() {
    assert_eq!(toks(r#""a\n\t\\\"b""#), vec![Tok::Str("a\n\t\\\"b".into())]);
    assert_eq!(toks(r"'it\'s'"), vec![Tok::Str("it's".into())]);
    // Unknown escapes keep the backslash (regex text survives).
    assert_eq!(toks(r#""\d+""#), vec![Tok::Str("\\d+".into())]);
}

#[test]
fn templates() {
    assert_eq!(
        toks("`Hi ${name}, ${ age }!`"),
        vec![Tok::Template(vec![
            TemplatePart::Text("Hi ".into()),
            TemplatePart::Var("name".into()),
            TemplatePart::Text(", ".into()),
            TemplatePart::Var("age".into()),
            TemplatePart::Text("!".into()),
        ])]
    );
}

#[test]
fn errors_have_columns() {
    let chars: Vec<char> = "a + \"open".chars().collect();
    let e = tokenize(&chars, 3, 5).err();
    assert_eq!(e.map(|d| (d.line, d.column)), Some((3, 9)));
    let chars: Vec<char> = "1 $ 2".chars().collect();
    assert_eq!(tokenize(&chars, 1, 1).err().map(|d| d.column), Some(3));
    let chars: Vec<char> = "99999999999999999999".chars().collect();
    assert!(tokenize(&chars, 1, 1).is_err());
    let chars: Vec<char> = "007".chars().collect();
    assert!(tokenize(&chars, 1, 1).is_err());
}
