//! The log query language (`q`), parsed into an [`Expr`]; the README's "Log search" documents
//! it for users.
//!
//! ```text
//! query   := or? EOF              (empty: every line)
//! or      := and ("OR" and)*
//! and     := unary ("AND"? unary)*
//! unary   := ("-" | "NOT") unary | primary
//! primary := "(" or ")" | FIELD ":" value | "\"" phrase "\"" | word ["*"]
//! ```
//!
//! Words match as tokens the way the `logs` text index splits messages: at every ASCII
//! character that is not a letter or digit (bytes of other characters belong to tokens), ASCII
//! letters lower-cased. A word with punctuation (`a-b`, a UUID, `user@host`) is therefore a
//! phrase of its parts, and an unknown `name:value` is such a word, never an error. Positions
//! in errors are 0-based character offsets into the query.

use ordo_clickhouse_store::LEVELS;
use uuid::Uuid;

/// Longest query accepted (characters): bounds the SQL and the parameters of one request.
pub const MAX_QUERY_CHARS: usize = 4_096;
/// Deepest nesting of parentheses and negations: the parser recurses.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Term(Term),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// One token, ASCII letters lower-cased.
    Token(String),
    /// The text itself, case-insensitive, with its tokens (to narrow through the index).
    Phrase {
        text: String,
        tokens: Vec<String>,
    },
    /// A token beginning with `prefix`, after the whole tokens of `tokens` (`a-b*`), which
    /// must appear as `text` (without the `*`) when there are any.
    Prefix {
        text: String,
        tokens: Vec<String>,
        prefix: String,
    },
    /// `level:` a level or `level:>=warn`: severity numbers in `min..=max`.
    Severity {
        min: u8,
        max: u8,
    },
    Level(String),
    Column(Column, String),
    Job(Uuid),
    Trace(String),
    Attribute {
        key: String,
        value: String,
    },
}

/// Columns a `name:value` filter compares for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Service,
    Env,
    Host,
    Component,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::Service => "service",
            Column::Env => "env",
            Column::Host => "host",
            Column::Component => "component",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at position {position})")]
pub struct ParseError {
    /// 0-based character offset of the offending input.
    pub position: usize,
    pub message: String,
}

fn error<T>(position: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        position,
        message: message.into(),
    })
}

/// Parses `q`; `None` for a query without terms (it matches every line).
pub fn parse(query: &str) -> Result<Option<Expr>, ParseError> {
    if query.chars().count() > MAX_QUERY_CHARS {
        return error(
            MAX_QUERY_CHARS,
            format!("the query is longer than {MAX_QUERY_CHARS} characters"),
        );
    }
    let tokens = lex(query)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        end: query.chars().count(),
    };
    if parser.tokens.is_empty() {
        return Ok(None);
    }
    let expr = parser.or(0)?;
    match parser.peek() {
        None => Ok(Some(expr)),
        Some(token) => error(token.position, "unexpected ')' without a matching '('"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Open,
    Close,
    Minus,
    Word(String),
    Quoted(String),
    /// `name:"quoted value"`.
    QuotedField(String, String),
}

#[derive(Debug, Clone)]
struct Lexeme {
    kind: Kind,
    position: usize,
}

fn lex(query: &str) -> Result<Vec<Lexeme>, ParseError> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let kind = match c {
            '(' => {
                i += 1;
                Kind::Open
            }
            ')' => {
                i += 1;
                Kind::Close
            }
            '-' if chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) => {
                i += 1;
                Kind::Minus
            }
            '"' => {
                let (text, after) = quoted(&chars, i)?;
                i = after;
                Kind::Quoted(text)
            }
            _ => {
                while i < chars.len() && !is_delimiter(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.ends_with(':') && chars.get(i) == Some(&'"') {
                    let (text, after) = quoted(&chars, i)?;
                    i = after;
                    Kind::QuotedField(word[..word.len() - 1].to_owned(), text)
                } else {
                    Kind::Word(word)
                }
            }
        };
        out.push(Lexeme {
            kind,
            position: start,
        });
    }
    Ok(out)
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

/// The text of the quoted string opening at `open` (`\"` and `\\` escape) and the index
/// after its closing quote.
fn quoted(chars: &[char], open: usize) -> Result<(String, usize), ParseError> {
    let mut text = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((text, i + 1)),
            '\\' if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                text.push(chars[i + 1]);
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    error(open, "unterminated quote: add the closing \"")
}

struct Parser {
    tokens: Vec<Lexeme>,
    next: usize,
    /// Character length of the query: the position of errors at its end.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Lexeme> {
        self.tokens.get(self.next)
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Lexeme { kind: Kind::Word(w), .. }) if w == keyword)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut alternatives = vec![self.and(depth)?];
        while self.is_keyword("OR") {
            self.next += 1;
            alternatives.push(self.and(depth)?);
        }
        Ok(flatten(alternatives, Expr::Or))
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut all = vec![self.unary(depth)?];
        loop {
            match self.peek() {
                None
                | Some(Lexeme {
                    kind: Kind::Close, ..
                }) => break,
                _ if self.is_keyword("OR") => break,
                _ if self.is_keyword("AND") => {
                    self.next += 1;
                    all.push(self.unary(depth)?);
                }
                _ => all.push(self.unary(depth)?),
            }
        }
        Ok(flatten(all, Expr::And))
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let Some(lexeme) = self.peek().cloned() else {
            return error(self.end, "the query ends where a term is expected");
        };
        if depth >= MAX_DEPTH {
            return error(
                lexeme.position,
                format!("nested deeper than {MAX_DEPTH} parentheses or negations"),
            );
        }
        self.next += 1;
        match lexeme.kind {
            Kind::Minus => Ok(Expr::Not(Box::new(self.unary(depth + 1)?))),
            Kind::Word(w) if w == "NOT" => Ok(Expr::Not(Box::new(self.unary(depth + 1)?))),
            Kind::Word(w) if w == "OR" || w == "AND" => error(
                lexeme.position,
                format!("{w} needs a term on each side (quote it to search for the word)"),
            ),
            Kind::Open => {
                if matches!(
                    self.peek(),
                    Some(Lexeme {
                        kind: Kind::Close,
                        ..
                    })
                ) {
                    return error(lexeme.position, "empty parentheses");
                }
                let inner = self.or(depth + 1)?;
                match self.peek() {
                    Some(Lexeme {
                        kind: Kind::Close, ..
                    }) => {
                        self.next += 1;
                        Ok(inner)
                    }
                    _ => error(lexeme.position, "'(' is never closed: add the ')'"),
                }
            }
            Kind::Close => error(lexeme.position, "unexpected ')' where a term is expected"),
            Kind::Quoted(text) => Ok(Expr::Term(phrase(&text))),
            Kind::QuotedField(name, value) => {
                field(&name, &value, lexeme.position).map(|term| {
                    // An unknown name: the whole `name:"value"` is searched as text.
                    Expr::Term(term.unwrap_or_else(|| phrase(&format!("{name}:{value}"))))
                })
            }
            Kind::Word(word) => word_term(&word, lexeme.position).map(Expr::Term),
        }
    }
}

fn flatten(mut items: Vec<Expr>, combine: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        items.remove(0)
    } else {
        combine(items)
    }
}

/// A bare word: a field filter, a prefix, a token or a phrase of its parts.
fn word_term(word: &str, position: usize) -> Result<Term, ParseError> {
    if let Some((name, value)) = word.split_once(':') {
        if let Some(term) = field(name, value, position)? {
            return Ok(term);
        }
    }
    if let Some(stem) = word.strip_suffix('*') {
        let mut tokens = tokens(stem);
        let Some(prefix) = tokens.pop().filter(|_| stem.ends_with(is_token_char)) else {
            return error(
                position,
                "a prefix needs a letter or digit right before the *",
            );
        };
        let text = if tokens.is_empty() {
            String::new()
        } else {
            stem.to_owned()
        };
        return Ok(Term::Prefix {
            text,
            tokens,
            prefix,
        });
    }
    let parts = tokens(word);
    if parts.len() == 1 && parts[0].len() == word.len() {
        return Ok(Term::Token(parts[0].clone()));
    }
    Ok(phrase(word))
}

fn phrase(text: &str) -> Term {
    Term::Phrase {
        text: text.to_owned(),
        tokens: tokens(text),
    }
}

/// The filter `name:value` names, `None` when `name` is no field (the caller searches the
/// text instead); an error for a known field with an invalid value.
fn field(name: &str, value: &str, position: usize) -> Result<Option<Term>, ParseError> {
    // The value starts after `name:`.
    let value_position = position + name.chars().count() + 1;
    let column = |column| Ok(Some(Term::Column(column, value.to_owned())));
    let empty = || error(value_position, format!("{name}: needs a value"));
    if value.is_empty() && is_field(name) {
        return empty();
    }
    match name {
        "level" => level(value, value_position).map(Some),
        "service" => column(Column::Service),
        "env" => column(Column::Env),
        "host" => column(Column::Host),
        "component" => column(Column::Component),
        "job" => match Uuid::parse_str(value) {
            Ok(id) => Ok(Some(Term::Job(id))),
            Err(_) => error(
                value_position,
                format!("job: needs a job id (a UUID), got {value:?}"),
            ),
        },
        "trace" => Ok(Some(Term::Trace(value.to_ascii_lowercase()))),
        _ => match name.strip_prefix("attr.") {
            Some("") => error(position, "attr. needs a key: attr.<key>:<value>"),
            Some(key) => Ok(Some(Term::Attribute {
                key: key.to_owned(),
                value: value.to_owned(),
            })),
            None => Ok(None),
        },
    }
}

/// The filter of field `name` (a request parameter beside `q`, such as `level=>=warn`).
pub fn field_term(name: &str, value: &str) -> Result<Term, ParseError> {
    field(name, value, 0)?.ok_or_else(|| ParseError {
        position: 0,
        message: format!("{name} is no field"),
    })
}

fn is_field(name: &str) -> bool {
    matches!(
        name,
        "level" | "service" | "env" | "host" | "component" | "job" | "trace"
    ) || name.starts_with("attr.")
}

/// `error`, or a range: `>=warn`, `>info`, `<=debug`, `<error`.
fn level(value: &str, position: usize) -> Result<Term, ParseError> {
    let (op, name) = [">=", "<=", ">", "<"]
        .iter()
        .find_map(|op| value.strip_prefix(op).map(|rest| (*op, rest)))
        .unwrap_or(("", value));
    let name_position = position + op.len();
    let lower = name.to_ascii_lowercase();
    let Some(index) = LEVELS.iter().position(|l| *l == lower) else {
        return error(
            name_position,
            format!("unknown level {name:?}; levels are {}", LEVELS.join(", ")),
        );
    };
    // Each level owns four severity numbers, from 4 * index + 1 (see severity_number).
    let (first, last) = (index as u8 * 4 + 1, index as u8 * 4 + 4);
    let (min, max) = match op {
        "" => return Ok(Term::Level(lower)),
        ">=" => (first, u8::MAX),
        ">" => (last + 1, u8::MAX),
        "<=" => (0, last),
        _ => (0, first - 1),
    };
    Ok(Term::Severity { min, max })
}

/// A character the text index keeps inside tokens.
fn is_token_char(c: char) -> bool {
    !c.is_ascii() || c.is_ascii_alphanumeric()
}

/// `text` split the way the text index splits messages, ASCII letters lower-cased.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !is_token_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn term(q: &str) -> Term {
        match parse(q).unwrap().unwrap() {
            Expr::Term(term) => term,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn token(t: &str) -> Expr {
        Expr::Term(Term::Token(t.into()))
    }

    fn position(q: &str) -> usize {
        parse(q).unwrap_err().position
    }

    #[test]
    fn words_and_precedence() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("  ").unwrap(), None);
        assert_eq!(term("Timeout"), Term::Token("timeout".into()));
        assert_eq!(
            parse("a b OR c").unwrap().unwrap(),
            Expr::Or(vec![Expr::And(vec![token("a"), token("b")]), token("c")])
        );
        assert_eq!(
            parse("a AND (b OR c) -d NOT e").unwrap().unwrap(),
            Expr::And(vec![
                token("a"),
                Expr::Or(vec![token("b"), token("c")]),
                Expr::Not(Box::new(token("d"))),
                Expr::Not(Box::new(token("e"))),
            ])
        );
        // Lower-case keywords are words.
        assert_eq!(
            parse("a or b").unwrap().unwrap(),
            Expr::And(vec![token("a"), token("or"), token("b")])
        );
    }

    #[test]
    fn punctuation_and_quotes_make_phrases() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(
            term(id),
            Term::Phrase {
                text: id.into(),
                tokens: vec!["0190a1b2", "c3d4", "7e5f", "8a9b", "0c1d2e3f4a5b"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
            }
        );
        assert_eq!(
            term("\"Connection REFUSED \\\"x\\\"\""),
            Term::Phrase {
                text: "Connection REFUSED \"x\"".into(),
                tokens: vec!["connection".into(), "refused".into(), "x".into()],
            }
        );
        assert_eq!(
            term("http://x"),
            Term::Phrase {
                text: "http://x".into(),
                tokens: vec!["http".into(), "x".into()]
            }
        );
        assert_eq!(
            term("..."),
            Term::Phrase {
                text: "...".into(),
                tokens: vec![]
            }
        );
        // Unicode letters are token characters; only ASCII is lower-cased.
        assert_eq!(term("Grüße"), Term::Token("grüße".into()));
        assert_eq!(
            term("日本語-ログ"),
            Term::Phrase {
                text: "日本語-ログ".into(),
                tokens: vec!["日本語".into(), "ログ".into()]
            }
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            term("Conn*"),
            Term::Prefix {
                text: String::new(),
                tokens: vec![],
                prefix: "conn".into()
            }
        );
        assert_eq!(
            term("db-pri*"),
            Term::Prefix {
                text: "db-pri".into(),
                tokens: vec!["db".into()],
                prefix: "pri".into()
            }
        );
        assert_eq!(position("a *"), 2);
        assert_eq!(position("a-*"), 0);
    }

    #[test]
    fn fields() {
        assert_eq!(term("level:ERROR"), Term::Level("error".into()));
        assert_eq!(term("level:>=warn"), Term::Severity { min: 13, max: 255 });
        assert_eq!(term("level:>warn"), Term::Severity { min: 17, max: 255 });
        assert_eq!(term("level:<=info"), Term::Severity { min: 0, max: 12 });
        assert_eq!(term("level:<info"), Term::Severity { min: 0, max: 8 });
        assert_eq!(
            term("service:api"),
            Term::Column(Column::Service, "api".into())
        );
        assert_eq!(
            term("env:\"eu prod\""),
            Term::Column(Column::Env, "eu prod".into())
        );
        let id = Uuid::now_v7();
        assert_eq!(term(&format!("job:{id}")), Term::Job(id));
        assert_eq!(term("trace:ABC"), Term::Trace("abc".into()));
        assert_eq!(
            term("attr.http.status:500"),
            Term::Attribute {
                key: "http.status".into(),
                value: "500".into()
            }
        );
        // Not a field: the text.
        assert!(matches!(term("foo:bar"), Term::Phrase { .. }));
    }

    #[test]
    fn errors_point_at_the_offence() {
        assert_eq!(position("a \"b c"), 2);
        assert_eq!(position("a (b"), 2);
        assert_eq!(position("a b)"), 3);
        assert_eq!(position("a OR"), 4);
        assert_eq!(position("OR a"), 0);
        assert_eq!(position("x level:loud"), 8);
        assert_eq!(position("level:>=loud"), 8);
        assert_eq!(position("job:nope"), 4);
        assert_eq!(position("ü service:"), 10);
        assert_eq!(position("()"), 0);
        assert_eq!(position("attr.:x"), 0);
        let deep = "(".repeat(40) + "a" + &")".repeat(40);
        assert_eq!(position(&deep), MAX_DEPTH);
        assert!(parse(&"a ".repeat(MAX_QUERY_CHARS)).is_err());
    }

    proptest! {
        #[test]
        fn any_input_parses_or_fails_at_a_position(q in "[a-zA-Z0-9 ()\"*:.<>=\\-\\\\ü日]{0,40}|\\PC{0,40}") {
            match parse(&q) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.position <= q.chars().count()),
            }
        }
    }
}
