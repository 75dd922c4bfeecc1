//! Request counters (by outcome) and latency histograms per label value — a principal, a
//! tool — with a cap on distinct values: past it, new values share the series `other`, so a
//! flood of names (signed-in subjects, say) cannot grow the scrape or the memory without
//! bound.
//!
//! The request path does one concurrent-map read (a shard read lock, held for a few atomic
//! adds) when the value is known; a new value takes the shard's write lock once.

use dashmap::DashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{BUCKETS_US, OUTCOMES};

/// Distinct label values per family before `other`.
pub const DEFAULT_CAP: usize = 1_000;
pub const OTHER: &str = "other";

#[derive(Default)]
struct Series {
    outcomes: [AtomicU64; OUTCOMES.len()],
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Series {
    fn observe(&self, outcome: usize, us: u64) {
        if let Some(c) = self.outcomes.get(outcome) {
            c.fetch_add(1, Relaxed);
        }
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

/// One family: `<name>_total{<labels>,outcome}` and `<name>_duration_seconds{<labels>}`.
pub struct Family {
    name: &'static str,
    help: &'static str,
    /// The label names; a key holds their values joined by `\u{1}`.
    labels: &'static [&'static str],
    cap: usize,
    map: DashMap<Box<str>, Series, foldhash::fast::RandomState>,
    other: Series,
}

impl Family {
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        cap: usize,
    ) -> Self {
        Self {
            name,
            help,
            labels,
            cap,
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            other: Series::default(),
        }
    }

    /// Counts one request of `key` (label values joined by `\u{1}`); `outcome` indexes
    /// [`OUTCOMES`].
    pub fn observe(&self, key: &str, outcome: usize, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(s) = self.map.get(key) {
            return s.observe(outcome, us);
        }
        if self.map.len() >= self.cap {
            return self.other.observe(outcome, us);
        }
        self.map.entry(key.into()).or_default().observe(outcome, us);
    }

    /// Distinct label values held (not counting `other`).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The Prometheus text of the family, label values sorted.
    pub fn render(&self, o: &mut String) {
        type Row = (String, [u64; OUTCOMES.len()], Vec<u64>, u64, u64);
        let row = |labels: String, s: &Series| -> Row {
            let (outcomes, buckets) = snapshot(s);
            let count = s.count.load(Relaxed);
            (labels, outcomes, buckets, count, s.sum_us.load(Relaxed))
        };
        let mut rows: Vec<Row> = self
            .map
            .iter()
            .map(|e| row(self.label_text(e.key()), e.value()))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if self.other.count.load(Relaxed) > 0 {
            let other = vec![OTHER; self.labels.len()].join("\u{1}");
            rows.push(row(self.label_text(&other), &self.other));
        }
        let (name, help) = (self.name, self.help);
        let _ = writeln!(o, "# HELP {name}_total {help}");
        let _ = writeln!(o, "# TYPE {name}_total counter");
        for (labels, outcomes, ..) in &rows {
            for (i, n) in outcomes.iter().enumerate() {
                if *n > 0 {
                    let _ = writeln!(
                        o,
                        "{name}_total{{{labels},outcome=\"{}\"}} {n}",
                        OUTCOMES[i]
                    );
                }
            }
        }
        let _ = writeln!(
            o,
            "# HELP {name}_duration_seconds Latency of the same requests."
        );
        let _ = writeln!(o, "# TYPE {name}_duration_seconds histogram");
        for (labels, _, buckets, count, sum_us) in &rows {
            let mut cum = 0;
            for (i, b) in BUCKETS_US.iter().enumerate() {
                cum += buckets[i];
                let _ = writeln!(
                    o,
                    "{name}_duration_seconds_bucket{{{labels},le=\"{}\"}} {cum}",
                    *b as f64 / 1e6
                );
            }
            let _ = writeln!(
                o,
                "{name}_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                o,
                "{name}_duration_seconds_sum{{{labels}}} {}",
                *sum_us as f64 / 1e6
            );
            let _ = writeln!(o, "{name}_duration_seconds_count{{{labels}}} {count}");
        }
    }

    fn label_text(&self, key: &str) -> String {
        let mut out = String::new();
        for (i, (name, value)) in self.labels.iter().zip(key.split('\u{1}')).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{name}=\"");
            escape(&mut out, value);
            out.push('"');
        }
        out
    }
}

fn snapshot(s: &Series) -> ([u64; OUTCOMES.len()], Vec<u64>) {
    (
        std::array::from_fn(|i| s.outcomes[i].load(Relaxed)),
        s.buckets.iter().map(|b| b.load(Relaxed)).collect(),
    )
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn caps_distinct_values_then_other() {
        let f = Family::new("t_requests", "Requests.", &["principal"], 3);
        for name in ["a", "b", "c", "d", "e", "a"] {
            f.observe(name, 0, Duration::from_millis(1));
        }
        f.observe("q\"x\\y", 2, Duration::from_millis(1));
        assert_eq!(f.len(), 3);
        let mut o = String::new();
        f.render(&mut o);
        assert!(
            o.contains("t_requests_total{principal=\"a\",outcome=\"ok\"} 2"),
            "{o}"
        );
        assert!(
            o.contains("t_requests_total{principal=\"c\",outcome=\"ok\"} 1"),
            "{o}"
        );
        assert!(!o.contains("principal=\"d\""), "{o}");
        assert!(
            o.contains("t_requests_total{principal=\"other\",outcome=\"ok\"} 2"),
            "{o}"
        );
        assert!(
            o.contains("t_requests_total{principal=\"other\",outcome=\"error\"} 1"),
            "{o}"
        );
        assert!(
            o.contains("t_requests_duration_seconds_bucket{principal=\"a\",le=\"0.001\"} 2"),
            "{o}"
        );
        assert!(
            o.contains("t_requests_duration_seconds_count{principal=\"other\"} 3"),
            "{o}"
        );
    }

    #[test]
    fn two_labels_and_escaping() {
        let f = Family::new("t_tools", "Calls.", &["server", "tool"], 10);
        f.observe("gh\u{1}gh__echo", 1, Duration::from_micros(10));
        f.observe("gh\u{1}we\"ird", 0, Duration::from_micros(10));
        let mut o = String::new();
        f.render(&mut o);
        assert!(
            o.contains("t_tools_total{server=\"gh\",tool=\"gh__echo\",outcome=\"tool_error\"} 1"),
            "{o}"
        );
        assert!(o.contains("tool=\"we\\\"ird\""), "{o}");
    }
}
