//! The Prometheus text exposition format (version 0.0.4) of the exporter's answers: metric
//! families with their `# HELP` and `# TYPE` lines, samples with escaped label values, numbers
//! as Prometheus parses them (`NaN`, `+Inf`, `-Inf`).
//!
//! Pure and golden-tested. Must not: take a metric or label *name* from the network (names are
//! `&'static str` written in our code; only label *values* may carry peer or user text, and
//! [`escape_label`] is the one place they are written), or reorder what the caller added (a
//! family's samples stay together, in the order given, so the output is stable for tests and
//! diffs).

use std::fmt::Write;

/// `gauge` or `counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down (every figure of a probe).
    Gauge,
    /// A running total (the exporter's own request and test counts).
    Counter,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One sample: its label pairs and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// (name, value) pairs; the values are escaped when written.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family: one HELP, one TYPE, its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The metric name.
    pub name: &'static str,
    /// The HELP text (ours; escaped anyway).
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
    /// Its samples in order.
    pub samples: Vec<Sample>,
}

/// Families in the order first added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// The families.
    pub families: Vec<Family>,
    /// `# ` comment lines written after the families (Prometheus ignores them; a person
    /// reading the page with curl sees why a probe failed). Control characters are replaced.
    pub comments: Vec<String>,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Adds a sample to the family `name` (made on first use with `help` and `kind`).
    pub fn add(
        &mut self,
        kind: Kind,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) -> &mut Self {
        debug_assert!(valid_name(name), "metric name {name}");
        let s = Sample {
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        };
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(f) => f.samples.push(s),
            None => self.families.push(Family {
                name,
                help,
                kind,
                samples: vec![s],
            }),
        }
        self
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) -> &mut Self {
        self.add(Kind::Gauge, name, help, &[], value)
    }

    /// A gauge without labels when `value` is known; nothing otherwise (an absent figure is
    /// an absent series, not a 0 that would read as a measurement).
    pub fn opt_gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        value: Option<f64>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.gauge(name, help, v);
        }
        self
    }

    /// The text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.word());
            for s in &f.samples {
                out.push_str(f.name);
                if !s.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in s.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&format_value(s.value));
                out.push('\n');
            }
        }
        for c in &self.comments {
            out.push_str("# ");
            out.extend(c.chars().map(|c| if c.is_control() { ' ' } else { c }));
            out.push('\n');
        }
        out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the metric name grammar.
pub fn valid_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// A label value as the format wants it: `\` as `\\`, `"` as `\"`, a line feed as `\n`.
/// Everything else (any UTF-8) is allowed; other control characters are kept out of the line
/// as spaces, so a peer's text cannot start a new sample line.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c if c.is_control() => s.push(' '),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escaping: `\` and line feeds only (quotes are plain there).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: Go's float syntax as Prometheus parses it. Rust's `Display` never uses
/// an exponent and prints the shortest exact decimal, which Prometheus reads back exactly.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("cr\rtab\t"), "cr tab ");
        assert_eq!(escape_label("Zürich ✓"), "Zürich ✓");
        assert_eq!(escape_label(""), "");
    }

    #[test]
    fn values_read_back_as_prometheus_parses_them() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(940_000_000.0), "940000000");
        assert_eq!(format_value(-3.5), "-3.5");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e-7), "0.0000001");
    }

    #[test]
    fn names_follow_the_grammar() {
        assert!(valid_name("btest_probe_success"));
        assert!(valid_name("a:b_c9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn golden_page() {
        let mut e = Exposition::new();
        e.gauge("btest_probe_success", "1 if the test passed", 0.0)
            .add(
                Kind::Gauge,
                "btest_rtt_seconds",
                "round-trip time",
                &[("phase", "idle"), ("stat", "min")],
                0.0005,
            )
            .add(
                Kind::Counter,
                "btest_exporter_requests_total",
                "requests by path and code",
                &[("path", "/probe"), ("code", "200")],
                3.0,
            )
            .add(
                Kind::Gauge,
                "btest_rtt_seconds",
                "ignored: the family exists",
                &[("phase", "loaded"), ("stat", "max")],
                0.012,
            )
            .add(
                Kind::Gauge,
                "btest_probe_error",
                "the failure",
                &[("phase", "connect"), ("reason", "say \"hi\"\\\n")],
                1.0,
            )
            .opt_gauge("btest_absent", "not written", None);
        e.comments.push("error: line\nbreak".into());
        let want = "\
# HELP btest_probe_success 1 if the test passed
# TYPE btest_probe_success gauge
btest_probe_success 0
# HELP btest_rtt_seconds round-trip time
# TYPE btest_rtt_seconds gauge
btest_rtt_seconds{phase=\"idle\",stat=\"min\"} 0.0005
btest_rtt_seconds{phase=\"loaded\",stat=\"max\"} 0.012
# HELP btest_exporter_requests_total requests by path and code
# TYPE btest_exporter_requests_total counter
btest_exporter_requests_total{path=\"/probe\",code=\"200\"} 3
# HELP btest_probe_error the failure
# TYPE btest_probe_error gauge
btest_probe_error{phase=\"connect\",reason=\"say \\\"hi\\\"\\\\\\n\"} 1
# error: line break
";
        assert_eq!(e.render(), want);
    }
}
