//! The Prometheus text exposition format (0.0.4), written family by family.

use std::fmt::{Display, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// A metric family as declared in `families.rs`.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// A page being written.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts `family` (its HELP and TYPE lines); write its samples with the returned writer.
    pub fn family(&mut self, family: &Family) -> Samples<'_> {
        let _ = write!(
            self.text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n",
            name = family.name,
            help = family.help,
            kind = family.kind.as_str()
        );
        Samples {
            text: &mut self.text,
            name: family.name,
        }
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// Samples of one family.
pub struct Samples<'a> {
    text: &'a mut String,
    name: &'static str,
}

impl Samples<'_> {
    /// The family's one unlabelled sample.
    pub fn value(&mut self, v: impl Display) -> &mut Self {
        let _ = writeln!(self.text, "{} {v}", self.name);
        self
    }

    /// A sample with labels (values escaped as the format wants).
    pub fn labelled(&mut self, labels: &[(&str, &str)], v: impl Display) -> &mut Self {
        self.text.push_str(self.name);
        self.text.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(k);
            self.text.push_str("=\"");
            for c in val.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        let _ = writeln!(self.text, "}} {v}");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Family = Family {
        name: "x_total",
        kind: Kind::Counter,
        help: "Things.",
    };

    #[test]
    fn writes_help_type_and_escaped_labels() {
        let mut out = Exposition::default();
        out.family(&F)
            .labelled(&[("a", "q\"b\\s\nx"), ("b", "2")], 3)
            .value(4);
        assert_eq!(
            out.into_text(),
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"b\\\\s\\nx\",b=\"2\"} 3\nx_total 4\n"
        );
    }
}
