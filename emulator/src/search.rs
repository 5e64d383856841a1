//! The `search` / `filter` expression language of Okta list endpoints: a small parser and an
//! evaluator, both pure.
//!
//! Grammar (operators and `and`/`or` case-insensitive, property names case-sensitive):
//! `expr := term ("or" term)*`, `term := factor ("and" factor)*`,
//! `factor := "(" expr ")" | PROPERTY OP VALUE | PROPERTY "pr"`.
//! Which property accepts which operator is decided by a [`Dialect`], one per endpoint and
//! parameter, so `co` on `profile.firstName` is fine in a user search and refused in a filter.

use std::fmt;

/// A comparison operator of the expression language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal (case-insensitive for text).
    Eq,
    /// Starts with.
    Sw,
    /// Contains.
    Co,
    /// Present (has a non-null value).
    Pr,
    /// Greater than (dates).
    Gt,
    /// Greater than or equal (dates).
    Ge,
    /// Less than (dates).
    Lt,
    /// Less than or equal (dates).
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "sw" => Op::Sw,
            "co" => Op::Co,
            "pr" => Op::Pr,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Op::Eq => "eq",
            Op::Sw => "sw",
            Op::Co => "co",
            Op::Pr => "pr",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        };
        f.write_str(s)
    }
}

/// The value type of a property, which decides how literals are read and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text compared case-insensitively.
    Text,
    /// An RFC 3339 timestamp.
    Date,
}

/// One property a dialect accepts and the operators allowed on it.
#[derive(Debug)]
pub struct PropRule {
    /// Property name exactly as written in expressions (case-sensitive).
    pub name: &'static str,
    /// How values are read.
    pub kind: Kind,
    /// Operators allowed on this property.
    pub ops: &'static [Op],
}

/// The properties and operators one endpoint parameter accepts.
#[derive(Debug)]
pub struct Dialect {
    /// Accepted properties.
    pub props: &'static [PropRule],
}

const TEXT_SEARCH: &[Op] = &[Op::Eq, Op::Sw, Op::Pr];
const TEXT_SEARCH_CO: &[Op] = &[Op::Eq, Op::Sw, Op::Co, Op::Pr];
const DATE_SEARCH: &[Op] = &[Op::Eq, Op::Gt, Op::Ge, Op::Lt, Op::Le, Op::Pr];
const EQ_ONLY: &[Op] = &[Op::Eq];
const DATE_FILTER: &[Op] = &[Op::Eq, Op::Gt, Op::Ge, Op::Lt, Op::Le];

const fn text(name: &'static str, ops: &'static [Op]) -> PropRule {
    PropRule {
        name,
        kind: Kind::Text,
        ops,
    }
}

const fn date(name: &'static str, ops: &'static [Op]) -> PropRule {
    PropRule {
        name,
        kind: Kind::Date,
        ops,
    }
}

/// `search` on `GET /api/v1/users`: top-level properties and the profile attributes the
/// emulator stores; `co` only on first/last name, email and login (Okta's documented set).
pub static USER_SEARCH: Dialect = Dialect {
    props: &[
        text("id", TEXT_SEARCH),
        text("status", TEXT_SEARCH),
        text("type.id", TEXT_SEARCH),
        date("created", DATE_SEARCH),
        date("activated", DATE_SEARCH),
        date("statusChanged", DATE_SEARCH),
        date("lastUpdated", DATE_SEARCH),
        date("passwordChanged", DATE_SEARCH),
        date("lastLogin", DATE_SEARCH),
        text("profile.login", TEXT_SEARCH_CO),
        text("profile.email", TEXT_SEARCH_CO),
        text("profile.firstName", TEXT_SEARCH_CO),
        text("profile.lastName", TEXT_SEARCH_CO),
        text("profile.secondEmail", TEXT_SEARCH),
        text("profile.displayName", TEXT_SEARCH),
    ],
};

/// `filter` on `GET /api/v1/users`: `eq` only, plus date comparisons on `lastUpdated`.
pub static USER_FILTER: Dialect = Dialect {
    props: &[
        text("status", EQ_ONLY),
        date("lastUpdated", DATE_FILTER),
        text("id", EQ_ONLY),
        text("profile.login", EQ_ONLY),
        text("profile.email", EQ_ONLY),
        text("profile.firstName", EQ_ONLY),
        text("profile.lastName", EQ_ONLY),
    ],
};

/// `search` on `GET /api/v1/groups`: `co` on name and description.
pub static GROUP_SEARCH: Dialect = Dialect {
    props: &[
        text("id", TEXT_SEARCH),
        text("type", TEXT_SEARCH),
        date("created", DATE_SEARCH),
        date("lastUpdated", DATE_SEARCH),
        date("lastMembershipUpdated", DATE_SEARCH),
        text("profile.name", TEXT_SEARCH_CO),
        text("profile.description", TEXT_SEARCH_CO),
    ],
};

/// `filter` on `GET /api/v1/groups`: `id`, `type`, and the two dates (spec parameter text).
pub static GROUP_FILTER: Dialect = Dialect {
    props: &[
        text("id", EQ_ONLY),
        text("type", EQ_ONLY),
        date("lastUpdated", DATE_FILTER),
        date("lastMembershipUpdated", DATE_FILTER),
    ],
};

/// Why an expression was refused; becomes the `errorCauses` of an `E0000031` answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A literal after validation: lower-cased text or a timestamp in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// Lower-cased text.
    Text(String),
    /// Milliseconds since the epoch.
    Time(i64),
    /// No operand (`pr`).
    None,
}

/// A parsed, validated expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `property op value`.
    Cmp {
        /// Property name.
        prop: &'static str,
        /// Operator.
        op: Op,
        /// Value to compare with.
        operand: Operand,
    },
    /// Both sides hold.
    And(Box<Expr>, Box<Expr>),
    /// Either side holds.
    Or(Box<Expr>, Box<Expr>),
}

/// A property value of a record, as seen by the evaluator.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Text.
    Text(&'a str),
    /// Milliseconds since the epoch.
    Time(i64),
}

/// Something expressions can be evaluated against.
pub trait Record {
    /// The value of `prop`, or `None` when absent or null.
    fn value(&self, prop: &str) -> Option<Value<'_>>;
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
}

fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(e) => s.push(e),
                            None => return Err(ParseError("unterminated string".into())),
                        },
                        Some('"') => break,
                        Some(ch) => s.push(ch),
                        None => return Err(ParseError("unterminated string".into())),
                    }
                }
                tokens.push(Token::Str(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || ch == '(' || ch == ')' || ch == '"' {
                        break;
                    }
                    w.push(ch);
                    chars.next();
                }
                tokens.push(Token::Word(w));
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    dialect: &'a Dialect,
}

impl Parser<'_> {
    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.term()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.term()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.factor()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.factor()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn factor(&mut self) -> Result<Expr, ParseError> {
        match self.next() {
            Some(Token::Open) => {
                let e = self.expr()?;
                match self.next() {
                    Some(Token::Close) => Ok(e),
                    _ => Err(ParseError("missing closing parenthesis".into())),
                }
            }
            Some(Token::Word(prop)) => self.comparison(&prop),
            other => Err(ParseError(format!("expected a property, found {other:?}"))),
        }
    }

    fn comparison(&mut self, prop: &str) -> Result<Expr, ParseError> {
        let rule = self
            .dialect
            .props
            .iter()
            .find(|r| r.name == prop)
            .ok_or_else(|| ParseError(format!("unsupported property '{prop}'")))?;
        let op = match self.next() {
            Some(Token::Word(w)) => {
                Op::parse(&w).ok_or_else(|| ParseError(format!("unknown operator '{w}'")))?
            }
            other => return Err(ParseError(format!("expected an operator, found {other:?}"))),
        };
        if !rule.ops.contains(&op) {
            return Err(ParseError(format!(
                "operator '{op}' is not supported on '{prop}'"
            )));
        }
        let operand = if op == Op::Pr {
            Operand::None
        } else {
            let raw = match self.next() {
                Some(Token::Str(s)) => s,
                // Unquoted literals (true, false, numbers) compare as their text.
                Some(Token::Word(w)) if !is_keyword(&w) => w,
                other => return Err(ParseError(format!("expected a value, found {other:?}"))),
            };
            match rule.kind {
                Kind::Text => Operand::Text(raw.to_lowercase()),
                Kind::Date => Operand::Time(parse_time(&raw).ok_or_else(|| {
                    ParseError(format!("'{raw}' is not a valid date for '{prop}'"))
                })?),
            }
        };
        Ok(Expr::Cmp {
            prop: rule.name,
            op,
            operand,
        })
    }
}

fn is_keyword(w: &str) -> bool {
    w.eq_ignore_ascii_case("and") || w.eq_ignore_ascii_case("or")
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_time(raw: &str) -> Option<i64> {
    raw.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Parses and validates `input` against `dialect`.
pub fn parse(input: &str, dialect: &Dialect) -> Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Err(ParseError("empty expression".into()));
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        dialect,
    };
    let expr = p.expr()?;
    if p.pos < p.tokens.len() {
        return Err(ParseError(format!(
            "unexpected {:?} after the expression",
            p.tokens[p.pos]
        )));
    }
    Ok(expr)
}

impl Expr {
    /// Whether `record` satisfies the expression.
    pub fn matches(&self, record: &impl Record) -> bool {
        match self {
            Expr::And(a, b) => a.matches(record) && b.matches(record),
            Expr::Or(a, b) => a.matches(record) || b.matches(record),
            Expr::Cmp { prop, op, operand } => {
                let Some(value) = record.value(prop) else {
                    return false;
                };
                match (value, operand) {
                    (_, Operand::None) => *op == Op::Pr,
                    (Value::Text(v), Operand::Text(want)) => {
                        let v = v.to_lowercase();
                        match op {
                            Op::Eq => v == *want,
                            Op::Sw => v.starts_with(want.as_str()),
                            Op::Co => v.contains(want.as_str()),
                            _ => false,
                        }
                    }
                    (Value::Time(v), Operand::Time(want)) => match op {
                        Op::Eq => v == *want,
                        Op::Gt => v > *want,
                        Op::Ge => v >= *want,
                        Op::Lt => v < *want,
                        Op::Le => v <= *want,
                        _ => false,
                    },
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Rec(HashMap<&'static str, Value<'static>>);
    impl Record for Rec {
        fn value(&self, prop: &str) -> Option<Value<'_>> {
            self.0.get(prop).copied()
        }
    }

    fn alice() -> Rec {
        Rec(HashMap::from([
            ("status", Value::Text("ACTIVE")),
            ("profile.email", Value::Text("Alice@Example.com")),
            ("profile.firstName", Value::Text("Alice")),
            ("profile.lastName", Value::Text("Liddell")),
            (
                "lastUpdated",
                Value::Time(parse_time("2026-02-01T00:00:00Z").unwrap()),
            ),
        ]))
    }

    fn check(input: &str, dialect: &Dialect) -> bool {
        parse(input, dialect).unwrap().matches(&alice())
    }

    #[test]
    fn operators_and_values_are_case_insensitive() {
        assert!(check(r#"status EQ "active""#, &USER_SEARCH));
        assert!(check(r#"profile.email co "@EXAMPLE.COM""#, &USER_SEARCH));
        assert!(check(r#"profile.firstName Sw "al""#, &USER_SEARCH));
        assert!(!check(r#"profile.firstName sw "bo""#, &USER_SEARCH));
    }

    #[test]
    fn property_names_are_case_sensitive() {
        assert!(parse(r#"Status eq "ACTIVE""#, &USER_SEARCH).is_err());
        assert!(parse(r#"profile.FirstName eq "x""#, &USER_SEARCH).is_err());
    }

    #[test]
    fn precedence_and_parentheses() {
        // and binds tighter than or.
        assert!(check(
            r#"status eq "SUSPENDED" and profile.firstName eq "x" or profile.lastName sw "lid""#,
            &USER_SEARCH
        ));
        assert!(!check(
            r#"status eq "SUSPENDED" and (profile.firstName eq "x" or profile.lastName sw "lid")"#,
            &USER_SEARCH
        ));
    }

    #[test]
    fn dates_compare_and_pr_checks_presence() {
        assert!(check(
            r#"lastUpdated gt "2026-01-01T00:00:00.000Z""#,
            &USER_SEARCH
        ));
        assert!(!check(
            r#"lastUpdated lt "2026-01-01T00:00:00.000Z""#,
            &USER_FILTER
        ));
        assert!(check("profile.email pr", &USER_SEARCH));
        assert!(!check("lastLogin pr", &USER_SEARCH));
        assert!(parse(r#"lastUpdated gt "yesterday""#, &USER_SEARCH).is_err());
    }

    #[test]
    fn dialects_refuse_what_okta_refuses() {
        // No ends-with anywhere.
        assert!(parse(r#"profile.email ew "x""#, &USER_SEARCH).is_err());
        // co only on the four documented profile attributes.
        assert!(parse(r#"status co "ACT""#, &USER_SEARCH).is_err());
        // Filters are eq-only except lastUpdated.
        assert!(parse(r#"profile.email co "x""#, &USER_FILTER).is_err());
        assert!(parse(r#"profile.email eq "x""#, &USER_FILTER).is_ok());
        assert!(parse(r#"created gt "2026-01-01T00:00:00Z""#, &USER_FILTER).is_err());
        // gt only on dates.
        assert!(parse(r#"profile.login gt "a""#, &USER_SEARCH).is_err());
        assert!(parse(r#"profile.name co "eng""#, &GROUP_SEARCH).is_ok());
        assert!(parse(r#"profile.name co "eng""#, &GROUP_FILTER).is_err());
    }

    #[test]
    fn malformed_expressions_are_refused() {
        for bad in [
            "",
            "status",
            r#"status eq"#,
            r#"(status eq "A""#,
            r#"status eq "A" and"#,
            r#"status eq "A" status eq "B""#,
            r#"status eq "unterminated"#,
            r#"status eq and"#,
        ] {
            assert!(parse(bad, &USER_SEARCH).is_err(), "{bad:?} should fail");
        }
    }
}
