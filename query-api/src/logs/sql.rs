//! A search compiled into the `WHERE` clause over `logs`. Every value from the request is a
//! server-side query parameter (`{pN:Type}`, sent apart from the SQL): the SQL text holds
//! only column names, functions and parameter names.

use super::parse::{Expr, Term};
use serde::Serialize;

/// A parameter's value as the `clickhouse` crate sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Param {
    Text(String),
    Int(i64),
    UInt(u64),
}

/// SQL conditions under construction and the parameters they name.
#[derive(Debug, Default)]
pub struct Conditions {
    conditions: Vec<String>,
    params: Vec<(String, Param)>,
}

/// The start of a token in the ASCII-lower-cased message: its start or an ASCII character
/// that is neither letter nor digit (how the text index splits; other bytes are in tokens).
const TOKEN_START: &str = r"'(^|[\\x00-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7f])'";

impl Conditions {
    /// A placeholder for `value` of ClickHouse type `ty`.
    pub fn bind(&mut self, ty: &str, value: Param) -> String {
        let name = format!("p{}", self.params.len());
        let placeholder = format!("{{{name}:{ty}}}");
        self.params.push((name, value));
        placeholder
    }

    pub fn text(&mut self, value: &str) -> String {
        self.bind("String", Param::Text(value.to_owned()))
    }

    /// Adds a condition (ANDed with the others).
    pub fn push(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    pub fn push_expr(&mut self, expr: &Expr) {
        let condition = self.expr(expr);
        self.push(condition);
    }

    /// The `WHERE` clause's text (`1` without conditions).
    pub fn clause(&self) -> String {
        if self.conditions.is_empty() {
            "1".into()
        } else {
            self.conditions.join(" AND ")
        }
    }

    pub fn params(&self) -> &[(String, Param)] {
        &self.params
    }

    fn expr(&mut self, expr: &Expr) -> String {
        match expr {
            Expr::And(all) => self.join(all, " AND "),
            Expr::Or(any) => self.join(any, " OR "),
            Expr::Not(inner) => format!("NOT ({})", self.expr(inner)),
            Expr::Term(term) => self.term(term),
        }
    }

    fn join(&mut self, items: &[Expr], with: &str) -> String {
        let parts: Vec<String> = items.iter().map(|e| self.expr(e)).collect();
        format!("({})", parts.join(with))
    }

    fn term(&mut self, term: &Term) -> String {
        match term {
            Term::Token(token) => self.has_tokens(std::slice::from_ref(token), &[]),
            // The tokens narrow through the text index; the position check confirms order
            // and punctuation on what remains.
            Term::Phrase { text, tokens } => {
                let contains = self.contains(text);
                self.has_tokens(tokens, &[contains])
            }
            Term::Prefix {
                text,
                tokens,
                prefix,
            } => {
                let prefix = self.text(prefix);
                let mut extra = vec![format!(
                    "match(lower(message), concat({TOKEN_START}, {prefix}))"
                )];
                if !text.is_empty() {
                    extra.push(self.contains(text));
                }
                self.has_tokens(tokens, &extra)
            }
            Term::Level(level) => format!("level = {}", self.text(level)),
            Term::Severity { min, max } => {
                let min = self.bind("UInt8", Param::UInt((*min).into()));
                let max = self.bind("UInt8", Param::UInt((*max).into()));
                format!("severity_number BETWEEN {min} AND {max}")
            }
            Term::Column(column, value) => format!("{} = {}", column.name(), self.text(value)),
            Term::Job(id) => format!(
                "job_id = {}",
                self.bind("UUID", Param::Text(id.to_string()))
            ),
            Term::Trace(id) => format!("trace_id = {}", self.text(id)),
            Term::Attribute { key, value } => {
                let key = self.text(key);
                format!("attributes[{key}] = {}", self.text(value))
            }
        }
    }

    fn contains(&mut self, text: &str) -> String {
        format!(
            "positionCaseInsensitiveUTF8(message, {}) > 0",
            self.text(text)
        )
    }

    /// Every token present (as the index sees tokens), and the `extra` conditions.
    fn has_tokens(&mut self, tokens: &[String], extra: &[String]) -> String {
        let mut all: Vec<String> = tokens
            .iter()
            .map(|t| format!("hasToken(lower(message), {})", self.text(t)))
            .collect();
        all.extend_from_slice(extra);
        if all.len() == 1 {
            all.remove(0)
        } else {
            format!("({})", all.join(" AND "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::parse::parse;

    fn compile(q: &str) -> Conditions {
        let mut conditions = Conditions::default();
        conditions.push_expr(&parse(q).unwrap().unwrap());
        conditions
    }

    #[test]
    fn values_are_parameters_never_sql() {
        let conditions = compile("it's -\"x'); DROP TABLE logs --\" OR level:>=warn");
        let clause = conditions.clause();
        assert!(!clause.contains("DROP"), "{clause}");
        assert_eq!(
            clause,
            "(((hasToken(lower(message), {p1:String}) AND hasToken(lower(message), {p2:String}) \
             AND positionCaseInsensitiveUTF8(message, {p0:String}) > 0) \
             AND NOT ((hasToken(lower(message), {p4:String}) AND hasToken(lower(message), {p5:String}) \
             AND hasToken(lower(message), {p6:String}) AND hasToken(lower(message), {p7:String}) \
             AND positionCaseInsensitiveUTF8(message, {p3:String}) > 0))) \
             OR severity_number BETWEEN {p8:UInt8} AND {p9:UInt8})"
        );
        assert_eq!(
            conditions.params()[3].1,
            Param::Text("x'); DROP TABLE logs --".into())
        );
    }

    #[test]
    fn fields_compare_their_columns() {
        let conditions = compile("service:api attr.user:bob");
        assert_eq!(
            conditions.clause(),
            "(service = {p0:String} AND attributes[{p1:String}] = {p2:String})"
        );
        assert!(compile("conn*")
            .clause()
            .starts_with("match(lower(message), concat('"));
    }
}
