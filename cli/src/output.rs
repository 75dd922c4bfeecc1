//! Rendering: text for people, one JSON document for scripts, and the small formatting
//! helpers (tables, relative times, order-preserving pretty JSON) commands share.
//!
//! Writes never panic: a closed pipe (`canopy list tools | head -1`) just ends the output.

use std::io::Write;

use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::Format;
use crate::error::CliError;

/// Prints `value` as JSON, or the text `text` builds, depending on `-o`.
pub fn emit<T: Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match format {
        Format::Json => {
            let compact = serde_json::to_string(value)
                .map_err(|e| CliError::Other(format!("cannot render JSON output: {e}")))?;
            // Re-indenting the whole document (instead of `to_string_pretty`) also indents
            // embedded raw JSON such as tool schemas, keeping their key order.
            let doc = pretty_json(&compact).unwrap_or(compact);
            print(&doc);
        }
        Format::Text => print(&text()),
    }
    Ok(())
}

/// Writes `text` and a newline to stdout (unless `text` already ends in one).
pub fn print(text: &str) {
    // The test harness captures only `print!`; real runs write directly, because
    // `print!` panics when stdout is a closed pipe.
    if cfg!(test) {
        print!("{text}{}", if text.ends_with('\n') { "" } else { "\n" });
        return;
    }
    let mut out = std::io::stdout().lock();
    // A failed write (closed pipe, full disk) cannot be reported anywhere useful, and
    // must not turn into a panic.
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// `warning: …` on stderr.
pub fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "warning: {msg}");
}

/// A left-aligned table with a header row; empty `rows` give `empty` instead.
pub fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return empty.to_owned();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let last = i + 1 == row.len();
            if last {
                line.push_str(cell);
            } else {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The first line of a description, cut to `max` characters, for one-line listings.
pub fn one_line(text: &str, max: usize) -> String {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if first.chars().count() <= max {
        return first.to_owned();
    }
    let mut cut: String = first.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// "just now", "12s ago", "5m ago", "3h ago", "2d ago"; "never" for 0.
pub fn relative_time(now_ms: u64, then_ms: u64) -> String {
    if then_ms == 0 {
        return "never".to_owned();
    }
    // A timestamp slightly in the future is clock skew between hosts, not time travel.
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0 => "just now".to_owned(),
        1..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::User) => "user",
        _ => "unknown",
    }
}

pub fn transport_name(transport: i32) -> &'static str {
    match pb::Transport::try_from(transport) {
        Ok(pb::Transport::StreamableHttp) => "streamable_http",
        Ok(pb::Transport::Sse) => "sse",
        Ok(pb::Transport::Stdio) => "stdio",
        _ => "unknown",
    }
}

pub fn mode_name(mode: i32) -> &'static str {
    match pb::Mode::try_from(mode) {
        Ok(pb::Mode::Development) => "development",
        Ok(pb::Mode::Enterprise) => "enterprise",
        _ => "unknown",
    }
}

/// Re-indents valid JSON text, keeping object keys in the order they were written.
///
/// `serde_json::Value` would sort keys (the workspace does not enable `preserve_order`,
/// and enabling it here would change map order for every crate in the build), and a
/// schema's `properties` read best in the author's order.
pub fn pretty_json(text: &str) -> Result<String, serde_json::Error> {
    // Validate first, so the re-indenter below only ever sees well-formed JSON.
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                // Keep empty containers on one line: `{}`, `[]`.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The JSON every acknowledged command prints.
#[derive(Debug, Serialize)]
pub struct MutationReport {
    pub revision: u64,
    pub confirmed: u32,
    pub expected: u32,
    /// Milliseconds, with microsecond precision (a change can apply in 0.4 ms).
    pub elapsed_ms: f64,
    /// Connected data planes that had not applied `revision` when the wait ended.
    pub pending: Vec<String>,
    /// A token the control plane generated for this change (`--new-token`); shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

impl From<&pb::MutationResult> for MutationReport {
    fn from(r: &pb::MutationResult) -> Self {
        // An older control plane sends whole milliseconds only.
        let elapsed_ms = if r.elapsed_us > 0 {
            r.elapsed_us as f64 / 1000.0
        } else {
            r.elapsed_ms as f64
        };
        Self {
            revision: r.revision,
            confirmed: r.confirmed,
            expected: r.expected,
            elapsed_ms,
            pending: r.pending.clone(),
            access_token: (!r.access_token.is_empty()).then(|| r.access_token.clone()),
        }
    }
}

impl MutationReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "applied on {}/{} data planes in {} ms (revision {})",
            self.confirmed,
            self.expected,
            millis(self.elapsed_ms),
            self.revision
        );
        if self.expected == 0 {
            s.push_str("; no data plane is connected, they get it when they connect");
        }
        s
    }
}

/// Milliseconds as people read them: `0.412`, `14.2`, `5001`.
fn millis(ms: f64) -> String {
    let text = if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let t = table(
            &["NAME", "ROLE"],
            &[
                vec!["alice".into(), "user".into()],
                vec!["bob".into(), "admin".into()],
            ],
            "none",
        );
        assert_eq!(t, "NAME   ROLE\nalice  user\nbob    admin\n");
        assert_eq!(table(&["A"], &[], "No users."), "No users.");
        // A trailing empty column leaves no trailing spaces.
        let t = table(&["A", "B"], &[vec!["x".into(), String::new()]], "");
        assert_eq!(t, "A  B\nx\n");
    }

    #[test]
    fn relative_times() {
        let now = 10_000_000;
        assert_eq!(relative_time(now, 0), "never");
        assert_eq!(relative_time(now, now - 300), "just now");
        assert_eq!(relative_time(now, now + 5_000), "just now");
        assert_eq!(relative_time(now, now - 12_000), "12s ago");
        assert_eq!(relative_time(now, now - 5 * 60_000), "5m ago");
        assert_eq!(relative_time(now, now - 2 * 3_600_000), "2h ago");
        assert_eq!(
            relative_time(200_000_000, 200_000_000 - 2 * 86_400_000),
            "2d ago"
        );
    }

    #[test]
    fn pretty_json_keeps_order_and_strings() {
        let src = r#"{"type":"object","properties":{"z":{"type":"string","description":"a, b: {c}"},"a":{}},"required":["z"],"e":[]}"#;
        let out = pretty_json(src).unwrap();
        let expected = r#"{
  "type": "object",
  "properties": {
    "z": {
      "type": "string",
      "description": "a, b: {c}"
    },
    "a": {}
  },
  "required": [
    "z"
  ],
  "e": []
}"#;
        assert_eq!(out, expected);
        // Same document as the input.
        let a: serde_json::Value = serde_json::from_str(src).unwrap();
        let b: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(a, b);
        let esc = pretty_json(r#"{"q":"say \"hi\", {x}\\"}"#).unwrap();
        assert_eq!(esc, "{\n  \"q\": \"say \\\"hi\\\", {x}\\\\\"\n}");
        assert!(pretty_json("{").is_err());
    }

    #[test]
    fn mutation_text() {
        let r = MutationReport::from(&pb::MutationResult {
            revision: 9,
            confirmed: 2,
            expected: 2,
            elapsed_ms: 14,
            elapsed_us: 14_250,
            ..Default::default()
        });
        assert_eq!(
            r.text(),
            "applied on 2/2 data planes in 14.2 ms (revision 9)"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["revision"], 9);
        assert_eq!(json["confirmed"], 2);
        assert_eq!(json["expected"], 2);
        assert_eq!(json["elapsed_ms"], 14.25);
        assert!(json.get("access_token").is_none());
        let fast = MutationReport::from(&pb::MutationResult {
            elapsed_us: 412,
            ..Default::default()
        });
        assert!(fast.text().contains(" in 0.412 ms "), "{}", fast.text());
        assert_eq!(serde_json::to_value(&fast).unwrap()["elapsed_ms"], 0.412);
        assert_eq!(millis(5001.4), "5001");
        assert_eq!(millis(2.0), "2");
    }

    #[test]
    fn one_line_cuts() {
        assert_eq!(one_line("\n  Search repos.\nMore.", 80), "Search repos.");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
