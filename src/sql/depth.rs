//! How deeply a statement nests, checked before anything plans it: deeper than
//! [`MAX_DEPTH`] is `54001 statement too complex`, since parsing, planning and running
//! recurse once per level and too deep a statement would overflow a thread's stack.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Result, WeirError};

/// The deepest expression (or subquery) nesting a statement may have.
pub const MAX_DEPTH: usize = 1000;

/// Statements whose tokens bound their depth below this are not parsed for the check.
const SURELY_SHALLOW: usize = MAX_DEPTH / 4;

/// Tokens in one run (between commas, at any nesting) past which a statement is refused
/// without parsing it: what the parse thread's stack is sized for.
const MAX_RUN: usize = 200_000;

/// The stack of the thread that parses a statement that may be deep.
const CHECK_STACK: usize = 256 << 20;

/// An upper bound of the nesting depth of a statement from its tokens: the tokens on any
/// path from the start, where a comma ends a sibling and parentheses nest.
pub fn token_bound(tokens: &[TokenWithSpan]) -> usize {
    let mut outer: Vec<(usize, usize)> = Vec::new();
    let (mut base, mut run, mut max) = (0usize, 0usize, 0usize);
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::LParen | Token::LBracket | Token::LBrace => {
                run += 1;
                outer.push((base, run));
                base += run;
                run = 0;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if let Some((b, r)) = outer.pop() {
                    base = b;
                    run = r;
                }
            }
            Token::Comma => run = 0,
            Token::SemiColon => {
                outer.clear();
                base = 0;
                run = 0;
            }
            _ => run += 1,
        }
        max = max.max(base + run);
    }
    max
}

/// Refuse `text` (whose tokens are `tokens`) when it nests deeper than [`MAX_DEPTH`].
pub fn check(text: &str, tokens: &[TokenWithSpan]) -> Result<()> {
    let bound = token_bound(tokens);
    if bound <= SURELY_SHALLOW {
        return Ok(());
    }
    if bound > MAX_RUN {
        return Err(too_complex(format!(
            "more than {MAX_RUN} tokens without a comma"
        )));
    }
    // Parsing (and dropping) a deep tree recurses once per level: on a thread whose stack
    // holds the deepest tree this many tokens can make.
    let text = text.to_string();
    let depth = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("weir-depth-check".into())
            .stack_size(CHECK_STACK)
            .spawn_scoped(s, move || measure(&text))
            .map_err(|e| WeirError::Internal(format!("cannot start a thread: {e}")))?
            .join()
            .map_err(|_| WeirError::Internal("the depth check failed".into()))
    })?;
    match depth {
        // What sqlparser cannot parse (Weir's own statements) is judged by its tokens.
        None if bound > MAX_DEPTH => Err(too_complex(format!(
            "nested deeper than {MAX_DEPTH} levels"
        ))),
        Some(d) if d > MAX_DEPTH => Err(too_complex(format!(
            "expressions nested deeper than {MAX_DEPTH} levels"
        ))),
        _ => Ok(()),
    }
}

fn too_complex(why: String) -> WeirError {
    WeirError::TooComplex(format!(
        "statement too complex: {why}; simplify it or split it"
    ))
}

/// The deepest nesting of expressions and queries in `text` (stopping once past
/// [`MAX_DEPTH`]), or `None` when it does not parse as PostgreSQL.
fn measure(text: &str) -> Option<usize> {
    let statements = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(MAX_DEPTH)
        .try_with_sql(text)
        .ok()?
        .parse_statements()
        .ok()?;
    let mut depth = Depth { now: 0, max: 0 };
    let _ = statements.visit(&mut depth);
    Some(depth.max)
}

struct Depth {
    now: usize,
    max: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.now += 1;
        self.max = self.max.max(self.now);
        if self.now > MAX_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn verdict(text: &str) -> Result<()> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
            .tokenize_with_location()
            .unwrap();
        check(text, &tokens)
    }

    #[test]
    fn deep_expressions_are_too_complex_and_wide_ones_are_not() {
        let sum = |n: usize| format!("SELECT 1{}", "+1".repeat(n));
        verdict(&sum(10)).unwrap();
        verdict(&sum(900)).unwrap();
        for n in [1_500, 10_000, 20_000, 300_000] {
            let e = verdict(&sum(n)).unwrap_err();
            assert_eq!(e.sqlstate(), "54001", "{n}: {e}");
        }
        // Many columns, many values, a long IN list: wide, not deep.
        let wide = format!("SELECT {}", vec!["1+1"; 5000].join(", "));
        verdict(&wide).unwrap();
        let list = format!(
            "SELECT 1 WHERE 1 IN ({})",
            (0..20_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        verdict(&list).unwrap();
        // A CASE with many branches is flat.
        let case = format!(
            "SELECT CASE {} END",
            (0..400)
                .map(|i| format!("WHEN {i} = 1 THEN {i}"))
                .collect::<String>()
        );
        verdict(&case).unwrap();
    }
}
