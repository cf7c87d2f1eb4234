//! Plan tests kept as data: each case of `src/view/testdata/plans.txt` is a statement and
//! the shape the planner gives it (input, operator with its keys, window and aggregates,
//! the stages around it, emit mode, columns), or `error: …` and a part of the message it
//! is refused with. `WEIR_UPDATE_PLANS=1` rewrites the file with what the planner gives.
//!
//! Format: cases are separated by blank lines; `#` lines are comments; in a case, the
//! lines up to `----` are the statement, the lines after it what is expected.

use std::fmt::Write as _;

use super::*;
use crate::bench::drive::sql;
use crate::engine::Engine;
use crate::sql::streaming::Emit;
use crate::view::pipeline::plan_time_unit;
use crate::view::state::View;
use crate::window::assign::describe;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/view/testdata/plans.txt");

/// The catalog the cases read: streams with and without event time, and a batch table.
const SETUP: &[&str] = &[
    "CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
     date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND) \
     WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '10')",
    "CREATE SOURCE auctions (id BIGINT, seller BIGINT, category BIGINT, date_time TIMESTAMP, \
     WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND) \
     WITH (connector = 'nexmark', 'nexmark.table.type' = 'auction', 'nexmark.event.num' = '10')",
    "CREATE SOURCE clicks (auction BIGINT, channel VARCHAR, date_time TIMESTAMP) \
     WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '10')",
    "CREATE TABLE owners (channel VARCHAR, owner VARCHAR) AS VALUES ('Google', 'g'), ('Apple', 'a')",
];

struct Case {
    statement: String,
    expected: String,
    /// Comment lines before the case, kept when the file is rewritten.
    comments: Vec<String>,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n\n") {
        let mut comments = Vec::new();
        let mut statement = Vec::new();
        let mut expected = Vec::new();
        let mut after = false;
        for line in block.lines() {
            if line.starts_with('#') && !after && statement.is_empty() {
                comments.push(line.to_string());
            } else if line == "----" {
                after = true;
            } else if after {
                expected.push(line);
            } else if !line.trim().is_empty() {
                statement.push(line);
            }
        }
        if statement.is_empty() {
            if !comments.is_empty() {
                cases.push(Case {
                    statement: String::new(),
                    expected: String::new(),
                    comments,
                });
            }
            continue;
        }
        assert!(after, "a case without ----: {}", statement.join("\n"));
        cases.push(Case {
            statement: statement.join("\n"),
            expected: expected.join("\n"),
            comments,
        });
    }
    cases
}

/// Time in the time column's unit → `10s`.
fn span(ticks: i64, plan: &ViewPlan) -> String {
    match ticks {
        i64::MIN => "-inf".into(),
        i64::MAX => "+inf".into(),
        t if t < 0 => format!("-{}", describe(-t * nanos_per(plan_time_unit(plan)))),
        t => describe(t * nanos_per(plan_time_unit(plan))),
    }
}

fn input(side: &Side, plan: &ViewPlan) -> String {
    let source = &side.source;
    let read = match &side.input {
        Input::Windowed { time, spec, .. } => {
            let column = source.schema.field(*time).name();
            if spec.is_tumble() {
                format!(
                    "tumble {} over {}.{column}",
                    span(spec.size, plan),
                    source.name
                )
            } else {
                format!(
                    "hop {} every {} over {}.{column}",
                    span(spec.size, plan),
                    span(spec.slide, plan),
                    source.name
                )
            }
        }
        Input::Plain => source.name.clone(),
    };
    let columns: Vec<&str> = side
        .columns
        .iter()
        .map(|&i| source.schema.field(i).name().as_str())
        .collect();
    format!(
        "{read} (watermark {}; reads {})",
        source.watermark_text(),
        columns.join(", ")
    )
}

fn stage(stage: &Stage) -> String {
    let mut parts: Vec<&str> = stage
        .chain
        .steps
        .iter()
        .map(|s| match s {
            Step::Filter(_) => "filter",
            Step::Project(..) => "project",
        })
        .collect();
    if stage.query.is_some() {
        parts.push("query");
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn aggregate(spec: &AggregateSpec, plan: &ViewPlan) -> String {
    let names: Vec<&str> = spec
        .output_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let shown = spec.group_exprs.len() - usize::from(spec.hidden_key);
    let keys = if spec.hidden_key {
        "none".to_string()
    } else {
        names[..shown].join(", ")
    };
    let window = match spec.window {
        Some(w) => format!("{} ({})", names[w.column], span(w.size, plan)),
        None => "none".into(),
    };
    let calls: Vec<String> = spec
        .calls
        .iter()
        .map(|c| {
            let mut s = c.function.fun().name().to_string();
            if c.function.is_distinct() {
                s.push_str(" distinct");
            }
            if c.filter.is_some() {
                s.push_str(" filtered");
            }
            s
        })
        .collect();
    format!(
        "keys {keys}; window {window}; aggregates {}",
        calls.join(", ")
    )
}

fn operator(plan: &ViewPlan) -> String {
    match &plan.operator {
        Operator::Aggregate(spec) => format!("aggregate: {}", aggregate(spec, plan)),
        Operator::Buffer(key) => format!(
            "buffer rows per window: by {} ({})",
            if key.is_start {
                "window_start"
            } else {
                "window_end"
            },
            span(key.size, plan)
        ),
        Operator::Append => "append".into(),
        Operator::Join(j) => {
            let mut s = format!(
                "join with {}: by {}; bound {}",
                input(&j.right, plan),
                match j.by {
                    JoinBy::Keys(_) => "keys",
                    JoinBy::Query(_) => "query",
                },
                match j.bound {
                    Some(b) => format!(
                        "right within [left {}, left {}]",
                        signed(b.lo, plan),
                        signed(b.hi, plan)
                    ),
                    None => "none".into(),
                }
            );
            let _ = write!(
                s,
                "; after {}",
                stage(&Stage {
                    chain: j.after.clone(),
                    query: None
                })
            );
            match &j.then {
                Some(agg) => {
                    let _ = write!(s, "; then aggregate: {}", aggregate(agg, plan));
                }
                None => s.push_str("; then append"),
            }
            s
        }
    }
}

fn signed(t: i64, plan: &ViewPlan) -> String {
    match t {
        i64::MIN | i64::MAX => span(t, plan),
        t if t < 0 => format!("- {}", span(-t, plan)),
        t => format!("+ {}", span(t, plan)),
    }
}

/// The shape of a compiled view, one aspect a line.
fn shape(view: &View) -> String {
    let plan = &view.plan;
    let columns: Vec<String> = plan
        .schema
        .fields()
        .iter()
        .zip(&plan.tags)
        .map(|(f, t)| match t {
            Some(Tag::Start) => format!("{} (start)", f.name()),
            Some(Tag::End) => format!("{} (end)", f.name()),
            Some(Tag::Time) => format!("{} (time)", f.name()),
            None => f.name().clone(),
        })
        .collect();
    [
        format!("input: {}", input(&plan.stream, plan)),
        format!("before: {}", stage(&plan.stream.pre)),
        format!("operator: {}", operator(plan)),
        format!("after: {}", stage(&plan.post)),
        format!(
            "emit: {}",
            match view.emit {
                Emit::OnUpdate => "on update",
                Emit::OnWindowClose => "on window close",
            }
        ),
        format!("columns: {}", columns.join(", ")),
    ]
    .join("\n")
}

/// What the engine makes of `statement`: the shape of the view it creates (then dropped),
/// or `error: message`. The sources hold a few events, so that a view's pipeline ends
/// soon after it starts.
async fn outcome(engine: &Engine, statement: &str) -> String {
    if let Err(e) = sql(engine, statement).await {
        return format!("error: {e}");
    }
    let Some(view) = engine.catalog().view("v") else {
        return "ok".into();
    };
    let shown = shape(&view);
    sql(engine, "DROP MATERIALIZED VIEW v").await.unwrap();
    shown
}

/// Whether `got` is what `expected` says: equal, or for errors, containing its message.
fn matches(expected: &str, got: &str) -> bool {
    match expected.strip_prefix("error: ") {
        Some(message) => got.starts_with("error: ") && got.contains(message),
        None => expected == got,
    }
}

#[tokio::test]
async fn view_plans_and_refusals_match_testdata() {
    let engine = Engine::new().await.unwrap();
    for statement in SETUP {
        sql(&engine, statement).await.unwrap();
    }
    let text = std::fs::read_to_string(FILE).unwrap();
    let cases = parse(&text);
    let mut failures = Vec::new();
    let mut rewritten = String::new();
    let mut run = 0;
    for case in &cases {
        for c in &case.comments {
            rewritten.push_str(c);
            rewritten.push('\n');
        }
        if case.statement.is_empty() {
            rewritten.push('\n');
            continue;
        }
        run += 1;
        let got = outcome(&engine, &case.statement).await;
        let keep = if matches(&case.expected, &got) {
            case.expected.clone()
        } else {
            failures.push(format!(
                "{}\n---- expected\n{}\n---- got\n{got}",
                case.statement, case.expected
            ));
            got
        };
        let _ = write!(rewritten, "{}\n----\n{keep}\n\n", case.statement);
    }
    assert!(run >= 20, "only {run} cases read from {FILE}");
    if std::env::var_os("WEIR_UPDATE_PLANS").is_some() {
        std::fs::write(FILE, rewritten.trim_end().to_string() + "\n").unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{} of {run} cases differ (WEIR_UPDATE_PLANS=1 rewrites {FILE}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_case_format_reads_statements_expectations_and_comments() {
    let cases = parse(
        "# about\nSELECT 1\nFROM t\n----\nerror: no\n\n# next\nSELECT 2\n----\ninput: x\nemit: y\n",
    );
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].comments, ["# about"]);
    assert_eq!(cases[0].statement, "SELECT 1\nFROM t");
    assert_eq!(cases[0].expected, "error: no");
    assert_eq!(cases[1].expected, "input: x\nemit: y");
    assert!(matches("error: no such", "error: there is no such thing"));
    assert!(!matches("error: no such", "input: x"));
    assert!(!matches("input: x", "input: x\nemit: y"));
}
