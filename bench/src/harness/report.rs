//! The result table and its markdown.

use std::fmt::Write as _;

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub figure: String,
    pub ours: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    /// `None`: informational, no target.
    pub pass: Option<bool>,
    /// Core 0 (server side) busy % during ours / baseline.
    pub core0: String,
    /// Core 1 (load generator) busy %.
    pub core1: String,
    pub loadgen: String,
}

pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a >= 10_000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.0}%")
    } else {
        "n/a".into()
    }
}

/// Markdown: a header block, the table, then notes.
pub fn markdown(title: &str, header: &[String], rows: &[Row], notes: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    for h in header {
        let _ = writeln!(s, "- {h}");
    }
    let _ = writeln!(
        s,
        "\n| figure | ours | baseline | ratio | target | pass/fail | core 0 busy (ours / baseline) | core 1 busy | load generator |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let verdict = match r.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "—",
        };
        let cell = |x: &str| {
            if x.is_empty() {
                "—".to_owned()
            } else {
                x.replace('|', "\\|")
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&r.figure),
            cell(&r.ours),
            cell(&r.baseline),
            cell(&r.ratio),
            cell(&r.target),
            verdict,
            cell(&r.core0),
            cell(&r.core1),
            cell(&r.loadgen)
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNotes:\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}
