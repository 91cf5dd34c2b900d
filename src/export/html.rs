//! The one-file HTML report: `btest client ... --report FILE.html` (one test) and
//! `btest fleet FILE --report FILE.html` (a results matrix, then one section per target).
//!
//! Owns: rendering a report from the records a test already produced (record.rs): the page
//! layout, a small inline stylesheet, inline SVG charts (axes with round ticks, legends) and
//! escaping of everything that comes from records or parameters. Also the small XML
//! well-formedness checker ([`check_well_formed`]) the tests use on its output.
//!
//! Must not: do I/O or read clocks (the caller writes the file and formats `generated`),
//! decide or recompute a value (it shows what the records say; report.rs decides them), or
//! reference anything outside the file: no scripts, images, fonts or URLs, and a CSP that
//! forbids them, so the file can be mailed or attached to a ticket and opened offline.
//!
//! The markup is polyglot (XHTML-compatible) HTML5: every element closed, attributes
//! double-quoted, text escaped, so an XML parser reads it as well as a browser does. The only
//! URL in it is the SVG namespace, which XML needs. Kept lean for the 1 MiB binary budget:
//! plain `write!` into one String, no templates.

use std::fmt::{self, Write as _};

use crate::record::{field as F, Field, Record, Ty, Value};
use crate::units::{format_rate, Fixed};

/// Writing into a String cannot fail; this drops the `fmt::Result`.
macro_rules! w {
    ($o:expr, $($t:tt)*) => {{
        let _ = write!($o, $($t)*);
    }};
}

/// One test's report.
pub struct TestReport<'a> {
    /// e.g. "btest udp both to 10.0.0.1:2000".
    pub title: String,
    /// RFC 3339 time, formatted by the caller.
    pub generated: String,
    /// The test parameters, in order.
    pub params: Vec<(String, String)>,
    /// `interval` records, in order.
    pub intervals: &'a [Record],
    /// The `summary` record, when the test got that far.
    pub summary: Option<&'a Record>,
    /// The `error` record (`message`, `phase`), when the test failed.
    pub error: Option<&'a Record>,
}

/// One fleet target: its `target` record and its test.
pub struct FleetEntry<'a> {
    /// The `target` record.
    pub target: &'a Record,
    /// Its test (the last attempt).
    pub test: TestReport<'a>,
}

/// The whole page: one test.
pub fn render_test(r: &TestReport) -> String {
    let mut o = String::with_capacity(8192 + r.intervals.len() * 400);
    open(&mut o, &r.title, &r.generated);
    body(&mut o, r, 2, None);
    o.push_str(CLOSE);
    o
}

/// The whole page: a fleet run. Target N (from 1, in `entries` order) is `<section
/// id="target-N">`; the matrix links to it.
pub fn render_fleet(
    title: &str,
    generated: &str,
    params: &[(String, String)],
    entries: &[FleetEntry],
) -> String {
    let mut o = String::with_capacity(8192 + entries.len() * 16384);
    open(&mut o, title, generated);
    if !params.is_empty() {
        o.push_str("<h2>Parameters</h2>");
        kv_table(&mut o, params);
    }
    o.push_str("<h2>Results</h2>");
    if entries.is_empty() {
        o.push_str("<p class=\"muted\">No targets.</p>");
    } else {
        matrix(&mut o, entries);
        fleet_chart(&mut o, entries);
    }
    for (i, e) in entries.iter().enumerate() {
        let t = e.target;
        w!(
            o,
            "<section id=\"target-{}\"><h2>{}. {}</h2><p class=\"muted\">{} · {}</p>",
            i + 1,
            i + 1,
            E(str_of(t.get(&F::NAME)).unwrap_or("")),
            E(&e.test.title),
            E(&e.test.generated)
        );
        body(&mut o, &e.test, 3, Some(t));
        o.push_str("</section>\n");
    }
    o.push_str(CLOSE);
    o
}

// Small on purpose: system fonts, light theme, tables and charts that print.
const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;\
color:#222;background:#fff;max-width:1000px;margin:0 auto;padding:1em}\
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.5em}h3{font-size:1.1em}\
table{border-collapse:collapse;margin:.5em 0}\
th,td{border:1px solid #ddd;padding:.2em .6em;text-align:left;vertical-align:top}\
th{background:#f3f4f6}td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\
tr.failed td{background:#fdecea}.muted{color:#666}\
table.matrix{width:100%;font-size:.85em}.matrix td.n{white-space:normal}td.err{min-width:12em;overflow-wrap:anywhere}\
.error{border:2px solid #c62828;background:#fdecea;padding:.5em 1em;margin:1em 0}\
figure{margin:1em 0}svg{display:block;width:100%;max-width:860px;height:auto}figcaption{color:#444}\
section{border-top:2px solid #ccc;margin-top:2em}\
@media print{body{max-width:none}section{break-before:page}figure,tr{break-inside:avoid}}";

const CLOSE: &str = "</body></html>\n";

fn open(o: &mut String, title: &str, generated: &str) {
    w!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\" />\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\" />\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\
<title>{t}</title><style>{CSS}</style></head><body>\n\
<h1>{t}</h1><p class=\"muted\">Generated {}</p>\n",
        E(generated),
        t = E(title)
    );
}

/// Text escaped for element content and attribute values alike.
struct E<'a>(&'a str);

impl fmt::Display for E<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                // &apos; is not HTML 4; a numeric reference is read the same everywhere.
                '\'' => f.write_str("&#39;")?,
                '\t' | '\n' | '\r' => f.write_char(c)?,
                // XML does not allow these at all, not even as references, and a server
                // name or message could carry them.
                c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                    f.write_char('\u{fffd}')?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// How a value is shown.
#[derive(Clone, Copy)]
enum Fmt {
    Rate,
    Ms,
    Secs,
    Pct,
    Plain,
}

/// Writes a value: "—" for null, a number in the unit `f` says, text escaped.
fn put(o: &mut String, v: &Value, f: Fmt) {
    match (v, f, v.as_f64().filter(|x| x.is_finite())) {
        (Value::Null, ..) => o.push('—'),
        (Value::Str(t), ..) => w!(o, "{}", E(t)),
        (_, Fmt::Rate, Some(x)) => o.push_str(&format_rate(x)),
        // Fixed: never "-0.00" (issue 19: "Bufferbloat -0.00 ms").
        (_, Fmt::Ms, Some(x)) => w!(o, "{} ms", Fixed(x, 2)),
        (_, Fmt::Secs, Some(x)) => w!(o, "{} s", Fixed(x, 1)),
        (_, Fmt::Pct, Some(x)) => w!(o, "{} %", Fixed(x, 1)),
        // Numbers without a unit, booleans (and NaN, which plain() shows as 0).
        _ => o.push_str(&v.plain()),
    }
}

fn kv_table(o: &mut String, rows: &[(String, String)]) {
    o.push_str("<table>");
    for (k, v) in rows {
        w!(o, "<tr><th>{}</th><td>{}</td></tr>", E(k), E(v));
    }
    o.push_str("</table>\n");
}

fn str_of(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// The summary's key results first, in this order (null ones left out).
const KEY_ROWS: &[(&Field, &str, Fmt)] = &[
    (&F::TX_AVG_BPS, "Sent, client → server", Fmt::Rate),
    (&F::RX_AVG_BPS, "Received, server → client", Fmt::Rate),
    (&F::LOST_PACKETS, "Lost packets", Fmt::Plain),
    (&F::DURATION_S, "Duration", Fmt::Secs),
    (&F::END_REASON, "End reason", Fmt::Plain),
    (&F::RTT_METHOD, "Latency probe", Fmt::Plain),
    (&F::IDLE_RTT_P50_MS, "Idle RTT p50", Fmt::Ms),
    (&F::LOADED_RTT_P50_MS, "Loaded RTT p50", Fmt::Ms),
    (&F::LOADED_RTT_P90_MS, "Loaded RTT p90", Fmt::Ms),
    (&F::BUFFERBLOAT_MS, "Bufferbloat", Fmt::Ms),
    (&F::TCP_RTT_MS, "TCP RTT (kernel)", Fmt::Ms),
];

/// Everything below the page or section heading. `h` is the level of its headings; `target`
/// is the fleet's record for this test, which fills in what a failed test lacks.
fn body(o: &mut String, r: &TestReport, h: u8, target: Option<&Record>) {
    let failed = target.filter(|t| matches!(t.get(&F::OK), Value::Bool(false)));
    if let Some(e) = r.error {
        error_box(o, e.get(&F::MESSAGE), e.get(&F::PHASE));
    } else if let Some(t) = failed {
        error_box(o, t.get(&F::ERROR), t.get(&F::PHASE));
    }
    // The reader's order: the results, the charts, then what the test was and every field.
    if let Some(s) = r.summary {
        w!(o, "<h{h}>Summary</h{h}>");
        o.push_str("<table>");
        for &(key, label, f) in KEY_ROWS {
            let v = s.get(key);
            if matches!(v, Value::Null) && key.key != F::RTT_METHOD.key {
                continue;
            }
            w!(o, "<tr><th>{label}</th><td>");
            if matches!(v, Value::Null) {
                o.push_str("none");
            } else {
                put(o, v, f);
            }
            o.push_str("</td></tr>");
        }
        o.push_str("</table>\n");
    }
    w!(o, "<h{h}>Charts</h{h}>");
    if r.intervals.is_empty() {
        o.push_str("<p class=\"muted\">No intervals.</p>\n");
    } else {
        // What the test ran, from its summary, or else from the fleet's record.
        let hint = |key: &Field| {
            r.summary
                .and_then(|s| str_of(s.get(key)))
                .or_else(|| target.and_then(|t| str_of(t.get(key))))
                .unwrap_or("")
        };
        charts(o, r, hint(&F::PROTOCOL), hint(&F::DIRECTION));
    }
    if !r.params.is_empty() {
        w!(o, "<h{h}>Parameters</h{h}>");
        kv_table(o, &r.params);
    }
    if let Some(s) = r.summary {
        o.push_str("<details><summary>Every summary field</summary><table>");
        for (d, v) in s.fields() {
            if d.ty == Ty::Nested
                || matches!(v, Value::Null)
                || KEY_ROWS.iter().any(|k| k.0.key == d.key)
            {
                continue;
            }
            w!(o, "<tr><th>{}</th><td>", d.key);
            put(o, v, Fmt::Plain);
            o.push_str("</td></tr>");
        }
        o.push_str("</table></details>\n");
    }
    if !r.intervals.is_empty() {
        intervals_table(o, r.intervals);
    }
}

fn error_box(o: &mut String, message: &Value, phase: &Value) {
    o.push_str("<div class=\"error\" role=\"alert\"><strong>Failed</strong>");
    if let Some(p) = str_of(phase) {
        w!(o, " (phase: {})", E(p));
    }
    w!(o, ": {}</div>\n", E(&message.plain()));
}

fn intervals_table(o: &mut String, iv: &[Record]) {
    w!(
        o,
        "<details><summary>Intervals ({})</summary><table><tr><th>elapsed</th>\
<th>client → server</th><th>server → client</th><th>lost</th><th>RTT p50</th>\
<th>RTT p90</th></tr>",
        iv.len()
    );
    let cols = [
        (&F::ELAPSED_S, Fmt::Secs),
        (&F::TX_CURRENT_BPS, Fmt::Rate),
        (&F::RX_CURRENT_BPS, Fmt::Rate),
        (&F::LOST_PACKETS, Fmt::Plain),
        (&F::RTT_P50_MS, Fmt::Ms),
        (&F::RTT_P90_MS, Fmt::Ms),
    ];
    for r in iv {
        o.push_str("<tr>");
        for (k, f) in cols {
            o.push_str("<td class=\"n\">");
            put(o, r.get(k), f);
            o.push_str("</td>");
        }
        o.push_str("</tr>");
    }
    o.push_str("</table></details>\n");
}

/// What the y axis counts: picks tick labels and the smallest axis top.
#[derive(Clone, Copy)]
enum Axis {
    Rate,
    Ms,
    Count,
    /// 0 to 100 % (CPU).
    Pct,
}

struct Series {
    /// `data-series`.
    id: &'static str,
    label: &'static str,
    color: &'static str,
    /// Extra attributes (dashes, opacity).
    extra: &'static str,
    /// (elapsed_s, value), only intervals that have a finite value.
    pts: Vec<(f64, f64)>,
}

impl Series {
    fn of(
        iv: &[Record],
        key: &Field,
        id: &'static str,
        label: &'static str,
        color: &'static str,
    ) -> Series {
        let pts = iv
            .iter()
            .filter_map(|r| {
                let x = r.get(&F::ELAPSED_S).as_f64()?;
                let y = r.get(key).as_f64()?;
                (x.is_finite() && y.is_finite()).then_some((x, y))
            })
            .collect();
        Series {
            id,
            label,
            color,
            extra: "",
            pts,
        }
    }
}

fn charts(o: &mut String, r: &TestReport, protocol: &str, direction: &str) {
    let iv = r.intervals;
    let x_max = iv
        .iter()
        .map(|r| r.f64(&F::ELAPSED_S))
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    let any = |key: &Field, f: &dyn Fn(f64) -> bool| {
        iv.iter().any(|r| r.get(key).as_f64().is_some_and(f))
    };
    // Both directions on one chart, as WinBox draws them (issue 19).
    let mut rates = Vec::new();
    if direction == "transmit" || direction == "both" || any(&F::TX_CURRENT_BPS, &|v| v > 0.0) {
        rates.push(Series::of(
            iv,
            &F::TX_CURRENT_BPS,
            "tx",
            "sent, client → server",
            TX,
        ));
        // What the server said it received of our upload: the delivered rate, for UDP,
        // where it can fall short of what was sent (TCP delivers what it sends).
        let mut got = Series::of(
            iv,
            &F::REMOTE_RX_BYTES,
            "delivered",
            "delivered to the server",
            TX,
        );
        for (p, r) in got.pts.iter_mut().zip(iv.iter().filter(|r| {
            r.get(&F::ELAPSED_S).as_f64().is_some_and(f64::is_finite)
                && r.get(&F::REMOTE_RX_BYTES)
                    .as_f64()
                    .is_some_and(f64::is_finite)
        })) {
            let dt = r.f64(&F::INTERVAL_S);
            p.1 = if dt > 0.0 { p.1 * 8.0 / dt } else { 0.0 };
        }
        got.extra = " stroke-dasharray=\"5 3\" stroke-opacity=\"0.7\"";
        if protocol == "udp" && got.pts.iter().any(|p| p.1 > 0.0) {
            rates.push(got);
        }
    }
    if direction == "receive" || direction == "both" || any(&F::RX_CURRENT_BPS, &|v| v > 0.0) {
        rates.push(Series::of(
            iv,
            &F::RX_CURRENT_BPS,
            "rx",
            "received, server → client",
            RX,
        ));
    }
    if !rates.is_empty() {
        line_chart(
            o,
            "rate",
            "Rate per interval",
            Axis::Rate,
            x_max,
            &rates,
            None,
        );
    }
    if protocol == "udp" || any(&F::LOST_PACKETS, &|v| v > 0.0) {
        let lost = Series::of(iv, &F::LOST_PACKETS, "lost", "lost", "#c62828");
        let mut wire = Series::of(iv, &F::LOST_WIRE, "lost-wire", "lost on the way", "#6a1b9a");
        wire.extra = " stroke-dasharray=\"4 3\"";
        // The wire line only says something when this host's sockets dropped some.
        let series = if wire.pts == lost.pts {
            vec![lost]
        } else {
            vec![lost, wire]
        };
        line_chart(
            o,
            "loss",
            "Lost packets per interval",
            Axis::Count,
            x_max,
            &series,
            None,
        );
    }
    let rtt_keys = [
        &F::RTT_P50_MS,
        &F::RTT_P90_MS,
        &F::RTT_MAX_MS,
        &F::TCP_RTT_MS,
    ];
    if rtt_keys.iter().any(|k| any(k, &f64::is_finite)) {
        let mut max = Series::of(iv, &F::RTT_MAX_MS, "max", "max", "#9e9e9e");
        max.extra = " stroke-opacity=\"0.5\"";
        let series = [
            max,
            Series::of(iv, &F::RTT_P90_MS, "p90", "p90", "#ef6c00"),
            Series::of(iv, &F::RTT_P50_MS, "p50", "p50", "#2e7d32"),
            Series::of(iv, &F::TCP_RTT_MS, "tcp", "TCP RTT (kernel)", "#6a1b9a"),
        ];
        let idle = r
            .summary
            .and_then(|s| s.get(&F::IDLE_RTT_P50_MS).as_f64())
            .filter(|v| v.is_finite());
        line_chart(
            o,
            "rtt",
            "Round-trip time per interval",
            Axis::Ms,
            x_max,
            &series,
            idle,
        );
    }
    // Loss as a percentage each way, when the records carry it (issue 19 item 2).
    let loss = [
        Series::of(
            iv,
            &F::TX_LOSS_PCT,
            "tx-loss",
            "upload, client → server",
            TX,
        ),
        Series::of(
            iv,
            &F::RX_LOSS_PCT,
            "rx-loss",
            "download, server → client",
            RX,
        ),
    ];
    if loss.iter().any(|s| !s.pts.is_empty()) {
        line_chart(
            o,
            "loss-pct",
            "Loss per interval, %",
            Axis::Pct,
            x_max,
            &loss,
            None,
        );
    }
    let cpu = [
        Series::of(iv, &F::LOCAL_CPU, "local", "CPU, this machine", "#6a1b9a"),
        Series::of(iv, &F::REMOTE_CPU, "remote", "CPU, the server", "#00897b"),
    ];
    if cpu.iter().any(|s| !s.pts.is_empty()) {
        line_chart(o, "cpu", "CPU per interval", Axis::Pct, x_max, &cpu, None);
    }
}

/// The colours of the two directions, in every chart.
const TX: &str = "#1565c0";
const RX: &str = "#e65100";

// Chart geometry (viewBox units): size and the margins around the plot area.
const W: f64 = 720.0;
const H: f64 = 240.0;
const ML: f64 = 78.0;
const MR: f64 = 14.0;
const MT: f64 = 30.0;
const MB: f64 = 26.0;

/// A coordinate: one decimal, and never NaN or inf in the SVG.
struct P(f64);

impl fmt::Display for P {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let v = if self.0.is_finite() { self.0 } else { 0.0 };
        write!(f, "{v:.1}")
    }
}

/// The axis top and tick step for data up to `max`: 1, 2 or 5 times a power of ten, about
/// five ticks. `floor` (> 0) is the smallest top, so all-zero data still has an axis.
fn nice(max: f64, floor: f64) -> (f64, f64) {
    let m = if max.is_finite() && max > floor {
        max
    } else {
        floor
    };
    let raw = m / 5.0;
    // The power of ten at or below raw, by loops: powf and log10 would add libm code to the
    // static binary.
    let mut mag = 1.0;
    while mag * 10.0 <= raw {
        mag *= 10.0;
    }
    while mag > raw {
        mag /= 10.0;
    }
    let norm = raw / mag;
    let step = mag
        * if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
    ((m / step - 1e-9).ceil().max(1.0) * step, step)
}

/// "20.0" -> "20", "2.50" -> "2.5".
fn trim_num(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Decimals that show every multiple of `step` (1, 2 or 5 times a power of ten) exactly.
fn decimals(step: f64) -> usize {
    let (mut d, mut s) = (0, step);
    while s < 0.999 && d < 6 {
        s *= 10.0;
        d += 1;
    }
    d
}

fn svg_open(o: &mut String, id: &str, title: &str, w: f64) {
    w!(
        o,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {H}\" \
data-chart=\"{id}\" role=\"img\" font-size=\"11\"><title>{}</title>",
        P(w),
        E(title)
    );
}

fn svg_close(o: &mut String, title: &str) {
    w!(o, "</svg><figcaption>{}</figcaption></figure>\n", E(title));
}

/// Grid lines and labels of the y axis; returns the axis top.
fn y_axis(o: &mut String, w: f64, data_max: f64, axis: Axis) -> f64 {
    let floor = match axis {
        Axis::Rate => 1e3,
        Axis::Ms => 1.0,
        // Whole packets: with a top of at least 4 every step is an integer.
        Axis::Count => 4.0,
        Axis::Pct => 100.0,
    };
    let (top, step) = nice(data_max, floor);
    let d = decimals(step);
    for i in 0..=(top / step).round().min(20.0) as usize {
        let v = i as f64 * step;
        let y = y_of(v, top);
        w!(
            o,
            "<line x1=\"{ML}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e0e0e0\" />\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">",
            P(w - MR),
            P(ML - 6.0),
            P(y + 4.0),
            y = P(y)
        );
        match axis {
            Axis::Rate => {
                let s = format_rate(v);
                let (n, unit) = s.split_once(' ').unwrap_or((&s, ""));
                w!(o, "{} {unit}", trim_num(n));
            }
            Axis::Ms => w!(o, "{v:.d$} ms"),
            Axis::Count => w!(o, "{v:.d$}"),
            Axis::Pct => w!(o, "{v:.d$} %"),
        }
        o.push_str("</text>");
    }
    top
}

fn y_of(v: f64, top: f64) -> f64 {
    MT + (1.0 - (v / top).clamp(0.0, 1.0)) * (H - MT - MB)
}

fn legend(o: &mut String, items: &[(&str, &str, &str)]) {
    let mut x = ML;
    o.push_str("<g fill=\"#333\">");
    for (label, color, extra) in items {
        w!(
            o,
            "<line x1=\"{}\" x2=\"{}\" y1=\"14\" y2=\"14\" stroke=\"{color}\" stroke-width=\"3\"{extra} />\
<text x=\"{}\" y=\"18\">{}</text>",
            P(x),
            P(x + 18.0),
            P(x + 22.0),
            E(label)
        );
        x += 36.0 + 6.2 * label.chars().count() as f64;
    }
    o.push_str("</g>");
}

/// A line chart over elapsed time: one polyline per series with points, and `idle` as a
/// dashed horizontal line (the idle RTT p50).
fn line_chart(
    o: &mut String,
    id: &str,
    title: &str,
    axis: Axis,
    x_max: f64,
    series: &[Series],
    idle: Option<f64>,
) {
    let data_max = series
        .iter()
        .flat_map(|s| s.pts.iter().map(|p| p.1))
        .chain(idle)
        .fold(0.0, f64::max);
    svg_open(o, id, title, W);
    let top = y_axis(o, W, data_max, axis);
    // The axis ends where the test did (issue 19: a 20 s test ran to 25 s); round ticks up
    // to it.
    let x_top = if x_max.is_finite() && x_max > 0.0 {
        x_max
    } else {
        1.0
    };
    let (_, x_step) = nice(x_top, 1e-3);
    let x_of = |x: f64| ML + (x / x_top).clamp(0.0, 1.0) * (W - ML - MR);
    o.push_str("<g fill=\"#555\" text-anchor=\"middle\">");
    let d = decimals(x_step);
    for i in 0..=(x_top / x_step + 1e-6).floor().min(20.0) as usize {
        let x = i as f64 * x_step;
        w!(
            o,
            "<text x=\"{}\" y=\"{}\">{x:.d$} s</text>",
            P(x_of(x)),
            P(H - 8.0)
        );
    }
    w!(
        o,
        "</g><path d=\"M{ML} {MT}V{}H{}\" fill=\"none\" stroke=\"#888\" />",
        P(H - MB),
        P(W - MR)
    );
    let mut items = Vec::new();
    for s in series.iter().filter(|s| !s.pts.is_empty()) {
        w!(
            o,
            "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" \
stroke-linejoin=\"round\"{} points=\"",
            s.id,
            s.color,
            s.extra
        );
        for (i, &(x, y)) in s.pts.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            w!(o, "{sep}{},{}", P(x_of(x)), P(y_of(y, top)));
        }
        o.push_str("\" />");
        // A single point draws no line: mark it.
        if let [(x, y)] = s.pts[..] {
            w!(
                o,
                "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\" />",
                P(x_of(x)),
                P(y_of(y, top)),
                s.color
            );
        }
        items.push((s.label, s.color, s.extra));
    }
    if let Some(v) = idle {
        let y = y_of(v, top);
        w!(
            o,
            "<line data-series=\"idle-p50\" x1=\"{ML}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#455a64\" \
stroke-dasharray=\"6 4\" />",
            P(W - MR),
            P(y),
            P(y)
        );
        items.push(("idle p50", "#455a64", " stroke-dasharray=\"6 4\""));
    }
    legend(o, &items);
    svg_close(o, title);
}

/// A speed test's report (issue 22): what the runner measured, already placed on one
/// timeline (seconds since the first phase started) by params.rs.
#[cfg(feature = "speedtest")]
pub struct SpeedTestReport<'a> {
    pub title: String,
    pub generated: String,
    pub params: Vec<(String, String)>,
    /// (phase word, start s, end s), shaded on the charts.
    pub bands: Vec<(&'static str, f64, f64)>,
    /// (s, bit/s) received and sent, one point per one-second interval of a load phase.
    pub rx: Vec<(f64, f64)>,
    pub tx: Vec<(f64, f64)>,
    /// (s, mean probe RTT ms) per take.
    pub latency: Vec<(f64, f64)>,
    /// The `phase` records.
    pub phases: &'a [Record],
    /// The `speed_test` record.
    pub result: &'a Record,
    pub error: Option<&'a Record>,
}

/// Band fills per phase: light, so the lines over them stay readable in print.
#[cfg(feature = "speedtest")]
fn band_fill(phase: &str) -> &'static str {
    match phase {
        "download" => "#fff3e0",
        "upload" => "#e3f2fd",
        "bidirectional" => "#f3e5f5",
        _ => "#f1f8e9",
    }
}

/// A line chart with the phases shaded behind it (inserted after the chart's `<title>`).
#[cfg(feature = "speedtest")]
fn banded_chart(
    o: &mut String,
    id: &str,
    title: &str,
    axis: Axis,
    x_max: f64,
    series: &[Series],
    bands: &[(&'static str, f64, f64)],
) {
    let mut t = String::new();
    line_chart(&mut t, id, title, axis, x_max, series, None);
    let x_top = if x_max.is_finite() && x_max > 0.0 {
        x_max
    } else {
        1.0
    };
    let x_of = |x: f64| ML + (x / x_top).clamp(0.0, 1.0) * (W - ML - MR);
    let mut b = String::new();
    for (name, start, end) in bands {
        let (x0, x1) = (x_of(*start), x_of(*end));
        w!(
            b,
            "<g data-phase=\"{name}\"><rect x=\"{}\" y=\"{MT}\" width=\"{}\" height=\"{}\" fill=\"{}\" />\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#777\">{name}</text></g>",
            P(x0),
            P((x1 - x0).max(0.0)),
            P(H - MT - MB),
            band_fill(name),
            P((x0 + x1) / 2.0),
            P(MT + 12.0)
        );
    }
    match t.find("</title>") {
        Some(i) => {
            let at = i + "</title>".len();
            o.push_str(&t[..at]);
            o.push_str(&b);
            o.push_str(&t[at..]);
        }
        None => o.push_str(&t),
    }
}

/// The whole page: one speed test.
#[cfg(feature = "speedtest")]
pub fn render_speed_test(r: &SpeedTestReport) -> String {
    let mut o = String::with_capacity(16384 + r.latency.len() * 24);
    open(&mut o, &r.title, &r.generated);
    if let Some(e) = r.error {
        error_box(&mut o, e.get(&F::MESSAGE), e.get(&F::PHASE));
    }
    o.push_str("<h2>Result</h2><table>");
    let res = r.result;
    let rows: &[(&Field, &str, Fmt)] = &[
        (&F::GRADE, "Bufferbloat grade", Fmt::Plain),
        (
            &F::GRADE_INCREASE_MS,
            "Latency increase under load",
            Fmt::Ms,
        ),
        (&F::RPM, "Responsiveness (RPM)", Fmt::Plain),
        (&F::RATING, "Rating", Fmt::Plain),
        (&F::CONFIDENCE, "Confidence", Fmt::Plain),
        (&F::RPM_FOREIGN, "RPM, probes", Fmt::Plain),
        (&F::RPM_SELF, "RPM, load connections", Fmt::Plain),
        (&F::DOWNLOAD_BPS, "Download", Fmt::Rate),
        (&F::UPLOAD_BPS, "Upload", Fmt::Rate),
        (&F::CONGESTION, "Congestion control (ours)", Fmt::Plain),
        (&F::RTT_METHOD, "Probe", Fmt::Plain),
        (&F::PING_MIN_AVG_MAX, "ping-min-avg-max (ms)", Fmt::Plain),
        (
            &F::JITTER_MIN_AVG_MAX,
            "jitter-min-avg-max (ms)",
            Fmt::Plain,
        ),
        (&F::LOSS, "loss", Fmt::Plain),
        (&F::TCP_DOWNLOAD, "tcp-download", Fmt::Plain),
        (&F::TCP_UPLOAD, "tcp-upload", Fmt::Plain),
        (&F::UDP_DOWNLOAD, "udp-download", Fmt::Plain),
        (&F::UDP_UPLOAD, "udp-upload", Fmt::Plain),
    ];
    for (f, label, fmt) in rows {
        let v = res.get(f);
        if *v == Value::Null {
            continue;
        }
        w!(o, "<tr><th>{}</th><td>", E(label));
        match (fmt, v.as_f64()) {
            (Fmt::Plain, Some(x)) => w!(o, "{x:.0}"),
            _ => put(&mut o, v, *fmt),
        }
        o.push_str("</td></tr>");
    }
    o.push_str("</table>\n");
    if let Value::List(notes) = res.get(&F::NOTES) {
        for n in notes {
            o.push_str("<p class=\"muted\">");
            put(&mut o, n, Fmt::Plain);
            o.push_str("</p>");
        }
    }
    let x_max = r.bands.iter().map(|b| b.2).fold(0.0, f64::max);
    let series = |pts: &[(f64, f64)], id, label, color| Series {
        id,
        label,
        color,
        extra: "",
        pts: pts.to_vec(),
    };
    o.push_str("<h2>Timeline</h2>");
    banded_chart(
        &mut o,
        "throughput",
        "Throughput over the phases",
        Axis::Rate,
        x_max,
        &[
            series(&r.rx, "rx", "received (download)", RX),
            series(&r.tx, "tx", "sent (upload)", TX),
        ],
        &r.bands,
    );
    banded_chart(
        &mut o,
        "latency",
        "Probe round-trip time over the phases (mean per second)",
        Axis::Ms,
        x_max,
        &[series(&r.latency, "rtt", "round trip", "#2e7d32")],
        &r.bands,
    );
    o.push_str(
        "<h2>Phases</h2><table><tr><th>phase</th><th>down</th><th>up</th><th>IQM</th>\
<th>low</th><th>high</th><th>jitter</th><th>p99</th><th>increase</th><th>lost/sent</th>\
<th>TCP RTT</th><th>CPU local/remote</th></tr>",
    );
    for p in r.phases {
        let l = p.get(&F::LATENCY);
        o.push_str("<tr><td>");
        put(&mut o, p.get(&F::PHASE), Fmt::Plain);
        for (v, f) in [
            (p.get(&F::RX_BPS), Fmt::Rate),
            (p.get(&F::TX_BPS), Fmt::Rate),
            (l.field("iqm_ms"), Fmt::Ms),
            (l.field("low_ms"), Fmt::Ms),
            (l.field("high_ms"), Fmt::Ms),
            (l.field("jitter_ms"), Fmt::Ms),
            (l.field("p99_ms"), Fmt::Ms),
            (p.get(&F::INCREASE_MS), Fmt::Ms),
        ] {
            o.push_str("</td><td class=\"n\">");
            put(&mut o, v, f);
        }
        o.push_str("</td><td class=\"n\">");
        put(&mut o, l.field("lost"), Fmt::Plain);
        o.push('/');
        put(&mut o, l.field("sent"), Fmt::Plain);
        o.push_str("</td><td class=\"n\">");
        put(&mut o, p.get(&F::TCP_RTT_MS), Fmt::Ms);
        o.push_str("</td><td class=\"n\">");
        put(&mut o, p.get(&F::LOCAL_CPU), Fmt::Pct);
        o.push_str(" / ");
        put(&mut o, p.get(&F::REMOTE_CPU), Fmt::Pct);
        o.push_str("</td></tr>");
    }
    o.push_str("</table>\n");
    if !r.params.is_empty() {
        o.push_str("<h2>Parameters</h2>");
        kv_table(&mut o, &r.params);
    }
    o.push_str(CLOSE);
    o
}

/// log10 of `x` (> 0) without libm (see [`nice`]): decades by loops, the rest bit by bit
/// from log2; good to about 1e-6, far below a pixel.
fn log10(x: f64) -> f64 {
    let (mut m, mut k) = (x, 0.0);
    while m >= 10.0 {
        m /= 10.0;
        k += 1.0;
    }
    while m < 1.0 {
        m *= 10.0;
        k -= 1.0;
    }
    let mut l2 = 0.0;
    while m >= 2.0 {
        m /= 2.0;
        l2 += 1.0;
    }
    let mut bit = 0.5;
    for _ in 0..24 {
        m *= m;
        if m >= 2.0 {
            m /= 2.0;
            l2 += bit;
        }
        bit /= 2.0;
    }
    k + l2 * std::f64::consts::LOG10_2
}

/// The fleet's overview: average up and down rate per target, as bars on a log scale.
///
/// Log, with a grid line and label per decade, and each bar's value written above it: fleets
/// mix links three or more decades apart (issue 19: a 50 Mbit/s tower was invisible beside a
/// 4 Gbit/s one on a linear axis). A linear axis with a minimum bar width would draw the small
/// one, but at a height that means nothing; on a log axis every height still compares.
fn fleet_chart(o: &mut String, entries: &[FleetEntry]) {
    let rate = |e: &FleetEntry, k: &Field| {
        e.target
            .get(k)
            .as_f64()
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let all = entries
        .iter()
        .flat_map(|e| [rate(e, &F::UP_BPS), rate(e, &F::DOWN_BPS)])
        .flatten();
    let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Whole decades around the data, the lowest at least 0.3 of one below the smallest bar
    // (so a rate of exactly 10 Mbps is not drawn at zero height); at least two decades, and
    // 1 kbps to 1 Mbps when there is no data.
    let (mut d0, mut d1) = if hi > 0.0 {
        ((log10(lo) - 0.3).floor(), log10(hi).ceil())
    } else {
        (3.0, 6.0)
    };
    if d1 - d0 < 2.0 {
        d0 = d1 - 2.0;
    }
    d0 = d0.max(0.0);
    d1 = d1.max(d0 + 1.0);
    let y_log = |v: f64| {
        let f = ((log10(v) - d0) / (d1 - d0)).clamp(0.0, 1.0);
        MT + (1.0 - f) * (H - MT - MB)
    };
    let w = W.max(ML + MR + 64.0 * entries.len() as f64);
    let title = "Average rate per target (log scale)";
    svg_open(o, "fleet-rates", title, w);
    let mut dec = 1.0;
    for _ in 0..d0 as usize {
        dec *= 10.0;
    }
    for _ in d0 as usize..=d1 as usize {
        let y = y_log(dec);
        let s = format_rate(dec);
        let (n, unit) = s.split_once(' ').unwrap_or((&s, ""));
        w!(
            o,
            "<line x1=\"{ML}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e0e0e0\" />\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">{} {unit}</text>",
            P(w - MR),
            P(ML - 6.0),
            P(y + 4.0),
            trim_num(n),
            y = P(y)
        );
        dec *= 10.0;
    }
    let slot = (w - ML - MR) / entries.len() as f64;
    let bar = (slot * 0.35).min(48.0);
    for (i, e) in entries.iter().enumerate() {
        // The pair of bars, centred in its slot.
        let x0 = ML + (i as f64 + 0.5) * slot - bar;
        let name = str_of(e.target.get(&F::NAME)).unwrap_or("");
        for (j, (k, id, color)) in [(&F::UP_BPS, "up", TX), (&F::DOWN_BPS, "down", RX)]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = rate(e, k) {
                let y = y_log(v);
                let x = x0 + j as f64 * bar;
                let label = format_rate(v);
                w!(
                    o,
                    "<rect data-series=\"{id}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\">\
<title>{} {id}: {}</title></rect>\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"9\" fill=\"{color}\">{}</text>",
                    P(x),
                    P(y),
                    P(bar),
                    P(H - MB - y),
                    E(name),
                    E(&label),
                    P(x + bar / 2.0),
                    // Above the bar, or inside the plot's top when the bar reaches it.
                    P((y - 3.0).max(MT - 2.0)),
                    E(label.trim_end_matches("ps"))
                );
            }
        }
        // Long names would run into the next slot.
        let cut = name.char_indices().nth(11).map_or(name.len(), |(at, _)| at);
        w!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}{}</text>",
            P(x0 + bar),
            P(H - 8.0),
            E(&name[..cut]),
            if cut < name.len() { "…" } else { "" }
        );
        if !matches!(e.target.get(&F::OK), Value::Bool(true)) {
            w!(
                o,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#c62828\">failed</text>",
                P(x0 + bar),
                P(H - MB - 6.0)
            );
        }
    }
    w!(
        o,
        "<path d=\"M{ML} {MT}V{}H{}\" fill=\"none\" stroke=\"#888\" />",
        P(H - MB),
        P(w - MR)
    );
    legend(
        o,
        &[
            ("up, client → server", TX, ""),
            ("down, server → client", RX, ""),
        ],
    );
    svg_close(o, title);
}

fn matrix(o: &mut String, entries: &[FleetEntry]) {
    o.push_str(
        "<table class=\"matrix\"><tr><th>#</th><th>target</th><th>server</th><th>result</th><th>attempts</th>\
<th>up</th><th>down</th><th>loss up / down</th><th>RTT idle / loaded</th><th>bufferbloat</th>\
<th>CPU local / remote</th><th>error</th></tr>",
    );
    for (i, e) in entries.iter().enumerate() {
        let t = e.target;
        let ok = matches!(t.get(&F::OK), Value::Bool(true));
        let (class, result) = if ok {
            ("ok", "ok")
        } else {
            ("failed", "failed")
        };
        w!(
            o,
            "<tr class=\"{class}\"><td class=\"n\">{n}</td><td><a href=\"#target-{n}\">{}</a></td>\
<td>{}</td><td>{result}</td><td class=\"n\">{}</td>",
            E(str_of(t.get(&F::NAME)).unwrap_or("")),
            E(str_of(t.get(&F::SERVER)).unwrap_or("")),
            E(&t.get(&F::ATTEMPTS).plain()),
            n = i + 1
        );
        // Pairs share a cell, to keep the table narrow enough for a page.
        for (a, b, f) in [
            (&F::UP_BPS, None, Fmt::Rate),
            (&F::DOWN_BPS, None, Fmt::Rate),
            (&F::UP_LOSS_PCT, Some(&F::DOWN_LOSS_PCT), Fmt::Pct),
            (&F::IDLE_RTT_MS, Some(&F::LOADED_RTT_MS), Fmt::Ms),
            (&F::BUFFERBLOAT_MS, None, Fmt::Ms),
            (&F::LOCAL_CPU_AVG, Some(&F::REMOTE_CPU_AVG), Fmt::Pct),
        ] {
            o.push_str("<td class=\"n\">");
            put(o, t.get(a), f);
            if let Some(b) = b {
                o.push_str(" / ");
                put(o, t.get(b), f);
            }
            o.push_str("</td>");
        }
        let err = str_of(t.get(&F::ERROR)).unwrap_or("");
        w!(o, "<td class=\"err\">{}</td></tr>", E(err));
    }
    o.push_str("</table>\n");
}

/// Checks that `doc` is well-formed XML, as our polyglot output must be: one root element,
/// tags nested and closed, attributes quoted and not repeated, `&` only in the five XML
/// entities or numeric references, no raw `<` in text or attribute values, no characters XML
/// forbids. A leading `<!DOCTYPE ...>` and comments are allowed. For tests (the unit tests and
/// the integration test of `--report`); it is not a full XML parser (no CDATA, no DTD).
#[doc(hidden)]
pub fn check_well_formed(doc: &str) -> Result<(), String> {
    let bad = |at: usize, what: &str| Err(format!("byte {at}: {what}"));
    if let Some((at, c)) = doc.char_indices().find(|&(_, c)| {
        ((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
            || c == '\u{fffe}'
            || c == '\u{ffff}'
    }) {
        return bad(at, &format!("character {:?} is not allowed in XML", c));
    }
    let b = doc.as_bytes();
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut i = 0;
    while i < b.len() {
        // Only sliced at a '<', which is always a char boundary.
        let rest = if b[i] == b'<' { &doc[i..] } else { "" };
        match b[i] {
            b'<' if rest.starts_with("<!--") => match rest[4..].find("-->") {
                Some(end) => i += 4 + end + 3,
                None => return bad(i, "unterminated comment"),
            },
            b'<' if rest.starts_with("<!DOCTYPE") || rest.starts_with("<!doctype") => {
                if roots > 0 {
                    return bad(i, "DOCTYPE after the root element");
                }
                match rest.find('>') {
                    Some(end) => i += end + 1,
                    None => return bad(i, "unterminated DOCTYPE"),
                }
            }
            b'<' if rest.starts_with("</") => {
                let name = name_at(doc, i + 2)?;
                let mut j = skip_ws(b, i + 2 + name.len());
                if b.get(j) != Some(&b'>') {
                    return bad(j, "expected '>' in end tag");
                }
                j += 1;
                match stack.pop() {
                    Some(open) if open == name => {}
                    Some(open) => return bad(i, &format!("</{name}> closes <{open}>")),
                    None => return bad(i, &format!("</{name}> without a start tag")),
                }
                i = j;
            }
            b'<' => {
                let name = name_at(doc, i + 1)?;
                if stack.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return bad(i, "a second root element");
                    }
                }
                let mut j = i + 1 + name.len();
                let mut attrs: Vec<&str> = Vec::new();
                loop {
                    let before = j;
                    j = skip_ws(b, j);
                    match b.get(j) {
                        None => return bad(i, &format!("unterminated tag <{name}")),
                        Some(b'>') => {
                            stack.push(name);
                            j += 1;
                            break;
                        }
                        Some(b'/') if b.get(j + 1) == Some(&b'>') => {
                            j += 2;
                            break;
                        }
                        Some(_) if j == before => {
                            return bad(j, "attributes need a space before them")
                        }
                        Some(_) => {
                            let an = name_at(doc, j)?;
                            if attrs.contains(&an) {
                                return bad(j, &format!("attribute {an} twice"));
                            }
                            attrs.push(an);
                            j = skip_ws(b, j + an.len());
                            if b.get(j) != Some(&b'=') {
                                return bad(j, &format!("attribute {an} without '='"));
                            }
                            j = skip_ws(b, j + 1);
                            let q = match b.get(j) {
                                Some(&q @ (b'"' | b'\'')) => q as char,
                                _ => return bad(j, &format!("attribute {an} is not quoted")),
                            };
                            j += 1;
                            let Some(len) = doc[j..].find(q) else {
                                return bad(j, "unterminated attribute value");
                            };
                            let val = &doc[j..j + len];
                            if let Some(k) = val.find('<') {
                                return bad(j + k, "'<' in an attribute value");
                            }
                            let mut k = 0;
                            while let Some(a) = val[k..].find('&') {
                                k += a;
                                k += entity_len(doc, j + k)?;
                            }
                            j += len + 1;
                        }
                    }
                }
                i = j;
            }
            b'&' => {
                if stack.is_empty() {
                    return bad(i, "text outside the root element");
                }
                i += entity_len(doc, i)?;
            }
            c => {
                if stack.is_empty() && !c.is_ascii_whitespace() {
                    return bad(i, "text outside the root element");
                }
                i += 1;
            }
        }
    }
    if let Some(open) = stack.last() {
        return bad(doc.len(), &format!("<{open}> is not closed"));
    }
    if roots == 0 {
        return bad(0, "no root element");
    }
    Ok(())
}

fn skip_ws(b: &[u8], mut j: usize) -> usize {
    while b.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    j
}

/// The (ASCII) XML name starting at `at`.
fn name_at(doc: &str, at: usize) -> Result<&str, String> {
    let b = doc.as_bytes();
    let mut j = at;
    while b.get(j).is_some_and(|&c| {
        c.is_ascii_alphabetic()
            || c == b'_'
            || c == b':'
            || (j > at && (c.is_ascii_digit() || c == b'-' || c == b'.'))
    }) {
        j += 1;
    }
    if j == at {
        return Err(format!("byte {at}: expected a name"));
    }
    Ok(&doc[at..j])
}

/// The length of the entity or character reference at `at` (which holds '&').
fn entity_len(doc: &str, at: usize) -> Result<usize, String> {
    let rest = &doc[at + 1..];
    let end = rest.find(';').filter(|&e| e <= 10);
    let ok = end.is_some_and(|e| {
        let name = &rest[..e];
        let code = if let Some(h) = name.strip_prefix("#x") {
            u32::from_str_radix(h, 16).ok()
        } else if let Some(d) = name.strip_prefix('#') {
            d.parse().ok()
        } else {
            return ["amp", "lt", "gt", "quot", "apos"].contains(&name);
        };
        code.and_then(char::from_u32)
            .is_some_and(|c| c as u32 >= 0x20 || matches!(c, '\t' | '\n' | '\r'))
    });
    match end {
        Some(e) if ok => Ok(e + 2),
        _ => Err(format!(
            "byte {at}: '&' that is not an XML entity or character reference"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{schema, Kind};

    /// A record of `kind` with the given fields; every other field is null, or zero, "",
    /// false or an empty object where the schema does not allow null.
    fn rec(kind: Kind, given: &[(&str, Value)]) -> Record {
        for (k, _) in given {
            assert!(
                schema(kind).iter().any(|d| d.key == *k),
                "{} has no field {k}",
                kind.name()
            );
        }
        Record::build(kind, |b| {
            for d in schema(kind) {
                let v = match given.iter().find(|(k, _)| *k == d.key) {
                    Some((_, v)) => v.clone(),
                    None if d.nullable => Value::Null,
                    None => match d.ty {
                        Ty::Str => Value::Str(String::new()),
                        Ty::Int => Value::Int(0),
                        Ty::Num => Value::num(0.0),
                        Ty::Bool => Value::Bool(false),
                        Ty::Nested => Value::Obj(Vec::new()),
                    },
                };
                b.push(d, v);
            }
        })
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn n(v: f64) -> Value {
        Value::num(v)
    }

    /// `count` intervals of a UDP test both ways, with latency probes on every other one and
    /// some loss.
    fn intervals(count: usize) -> Vec<Record> {
        (0..count)
            .map(|i| {
                let t = (i + 1) as f64;
                let rtt = |v: f64| if i % 2 == 0 { n(v + t) } else { Value::Null };
                rec(
                    Kind::Interval,
                    &[
                        ("elapsed_s", n(t)),
                        ("interval_s", n(1.0)),
                        ("tx_current_bps", n(95e6 + t * 1e5)),
                        ("rx_current_bps", n(90e6)),
                        ("lost_packets", Value::Int(i as u64 % 3)),
                        ("lost_wire", Value::Int(i as u64 % 2)),
                        ("local_cpu", n(12.0)),
                        ("rtt_p50_ms", rtt(2.0)),
                        ("rtt_p90_ms", rtt(4.0)),
                        ("rtt_max_ms", rtt(9.0)),
                    ],
                )
            })
            .collect()
    }

    fn summary(server: &str) -> Record {
        rec(
            Kind::Summary,
            &[
                ("timestamp", s("2026-12-01T10:00:00Z")),
                ("server", s(server)),
                ("protocol", s("udp")),
                ("direction", s("both")),
                ("connections", Value::Int(1)),
                ("duration_s", n(10.0)),
                ("tx_avg_bps", n(95.2e6)),
                ("rx_avg_bps", n(90e6)),
                ("lost_packets", Value::Int(7)),
                ("end_reason", s("completed")),
                ("rtt_method", s("echo")),
                ("idle_rtt_p50_ms", n(1.5)),
                ("loaded_rtt_p50_ms", n(6.0)),
                ("bufferbloat_ms", n(4.5)),
            ],
        )
    }

    fn report<'a>(
        iv: &'a [Record],
        sum: Option<&'a Record>,
        err: Option<&'a Record>,
    ) -> TestReport<'a> {
        TestReport {
            title: "btest udp both to 10.0.0.1:2000".into(),
            generated: "2026-12-01T10:00:11Z".into(),
            params: vec![
                ("protocol".into(), "udp".into()),
                ("direction".into(), "both".into()),
            ],
            intervals: iv,
            summary: sum,
            error: err,
        }
    }

    fn target(name: &str, server: &str, ok: bool, error: Option<&str>) -> Record {
        rec(
            Kind::Target,
            &[
                ("name", s(name)),
                ("server", s(server)),
                ("ok", Value::Bool(ok)),
                ("attempts", Value::Int(if ok { 1 } else { 3 })),
                ("protocol", s("udp")),
                ("direction", s("both")),
                ("up_bps", if ok { n(95.2e6) } else { Value::Null }),
                ("down_bps", if ok { n(90e6) } else { Value::Null }),
                ("up_loss_pct", if ok { n(0.1) } else { Value::Null }),
                ("idle_rtt_ms", if ok { n(1.5) } else { Value::Null }),
                ("error", Value::opt_str(error)),
                ("phase", Value::opt_str(error.map(|_| "connect"))),
            ],
        )
    }

    /// The opening tag of the chart `chart`'s series `series`, if it has one.
    fn polyline<'h>(html: &'h str, chart: &str, series: &str) -> Option<&'h str> {
        let at = html.find(&format!("data-chart=\"{chart}\""))?;
        let svg = &html[at..at + html[at..].find("</svg>")?];
        let p = svg.find(&format!("<polyline data-series=\"{series}\""))?;
        Some(&svg[p..p + svg[p..].find("/>")?])
    }

    fn points(html: &str, chart: &str, series: &str) -> usize {
        polyline(html, chart, series).map_or(0, |tag| {
            let p = &tag[tag.find("points=\"").unwrap() + 8..];
            p[..p.find('"').unwrap()].split_whitespace().count()
        })
    }

    /// The SVG parts of a page, where a NaN or inf would break the drawing.
    fn svgs(html: &str) -> Vec<&str> {
        html.split("<svg")
            .skip(1)
            .map(|s| &s[..s.find("</svg>").unwrap()])
            .collect()
    }

    fn assert_sane(html: &str) {
        check_well_formed(html).unwrap_or_else(|e| panic!("{e}\n{html}"));
        for svg in svgs(html) {
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    fn fleet_page() -> (String, Vec<Record>) {
        let iv = intervals(6);
        let sum = summary("10.0.0.1:2000");
        let err = rec(
            Kind::Error,
            &[
                ("message", s("connect: refused <&> \"x\" 'y'")),
                ("phase", s("connect")),
            ],
        );
        let t1 = target("core-1", "10.0.0.1:2000", true, None);
        let t2 = target(
            "edge-2",
            "10.0.0.2:2000",
            false,
            Some("connect: refused <&> \"x\" 'y'"),
        );
        let entries = [
            FleetEntry {
                target: &t1,
                test: report(&iv, Some(&sum), None),
            },
            FleetEntry {
                target: &t2,
                test: report(&[], None, Some(&err)),
            },
        ];
        let html = render_fleet(
            "btest fleet: f.txt",
            "2026-12-01T10:01:00Z",
            &[("parallel".into(), "2".into())],
            &entries,
        );
        (html, iv)
    }

    #[test]
    fn test_and_fleet_reports_are_well_formed() {
        let iv = intervals(10);
        let sum = summary("10.0.0.1:2000");
        let html = render_test(&report(&iv, Some(&sum), None));
        assert_sane(&html);
        for chart in ["rate", "loss", "rtt", "cpu"] {
            assert!(html.contains(&format!("data-chart=\"{chart}\"")), "{chart}");
        }
        assert!(html.contains("<details><summary>Intervals (10)</summary>"));
        assert!(html.contains("<tr><th>Sent, client → server</th><td>95.2 Mbps</td></tr>"));
        assert!(html.contains("<tr><th>Idle RTT p50</th><td>1.50 ms</td></tr>"));
        assert!(html.contains("<tr><th>timestamp</th><td>2026-12-01T10:00:00Z</td></tr>"));
        assert!(html.contains("data-series=\"idle-p50\""));
        assert!(html.contains("<title>Rate per interval</title>"));
        assert_sane(&fleet_page().0);
    }

    #[test]
    fn issue_19_axes_end_with_the_test_and_numbers_are_not_negative_zero() {
        // 20 one-second intervals: the x axis ends at 20 s, not 25.
        let mut iv = intervals(20);
        for r in &mut iv {
            *r = rec(
                Kind::Interval,
                &[
                    ("elapsed_s", r.get(&F::ELAPSED_S).clone()),
                    ("interval_s", n(1.0)),
                    ("tx_current_bps", n(150e6)),
                    ("rx_current_bps", n(90e6)),
                    ("remote_rx_bytes", Value::Int(12_500_000)),
                    ("local_cpu", n(12.0)),
                    ("remote_cpu", n(30.0)),
                ],
            );
        }
        let sum = rec(
            Kind::Summary,
            &[
                ("protocol", s("udp")),
                ("direction", s("both")),
                ("bufferbloat_ms", n(-0.001)),
            ],
        );
        let html = render_test(&report(&iv, Some(&sum), None));
        assert_sane(&html);
        assert!(
            html.contains(">20 s</text>") && !html.contains(">25 s</text>"),
            "{html}"
        );
        assert!(html.contains("<td>0.00 ms</td>") && !html.contains("-0.00"));
        // Sent and delivered (100 Mbps from the server's statuses) on one chart with rx.
        assert_eq!(points(&html, "rate", "tx"), 20);
        assert_eq!(points(&html, "rate", "delivered"), 20);
        assert_eq!(points(&html, "rate", "rx"), 20);
        assert!(html.contains("delivered to the server"));
        assert_eq!(points(&html, "cpu", "local"), 20);
        assert_eq!(points(&html, "cpu", "remote"), 20);
        assert!(
            !html.contains("data-chart=\"loss-pct\""),
            "no loss fields yet"
        );
    }

    #[test]
    fn fleet_bars_on_a_log_scale_show_small_and_large_rates() {
        for (x, want) in [
            (1.0, 0.0),
            (50e6, 7.69897),
            (4e9, 9.60206),
            (0.25, -0.60206),
        ] {
            assert!((log10(x) - want).abs() < 1e-5, "log10({x}) = {}", log10(x));
        }
        let mut a = target("big", "10.0.0.1:2000", true, None);
        let mut b = target("small", "10.0.0.2:2000", true, None);
        for (r, v) in [(&mut a, 4e9), (&mut b, 50e6)] {
            *r = rec(
                Kind::Target,
                &[
                    ("name", r.get(&F::NAME).clone()),
                    ("ok", Value::Bool(true)),
                    ("up_bps", n(v)),
                    ("down_bps", n(v)),
                ],
            );
        }
        let entries = [&a, &b].map(|t| FleetEntry {
            target: t,
            test: report(&[], None, None),
        });
        let html = render_fleet("f", "g", &[], &entries);
        assert_sane(&html);
        let heights: Vec<f64> = html
            .split("<rect ")
            .skip(1)
            .map(|r| {
                let h = &r[r.find("height=\"").unwrap() + 8..];
                h[..h.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(heights.len(), 4);
        // 4 Gbps fills most of the axis (10 Mbps to 10 Gbps); 50 Mbps is well visible.
        assert!(heights[0] > 150.0 && heights[2] > 40.0, "{heights:?}");
        for label in [
            ">10 Mbps</text>",
            ">10 Gbps</text>",
            ">4.00 Gb</text>",
            ">50.0 Mb</text>",
        ] {
            assert!(html.contains(label), "{label}");
        }
        assert!(
            !html.contains("overflow-x"),
            "no column hides behind a scroll"
        );
    }

    #[test]
    fn checker_rejects_broken_markup() {
        assert_eq!(
            check_well_formed(
                "<!DOCTYPE html>\n<a x=\"1\" y='&amp;&#39;&#x41;'><b />t &lt; <!-- c --></a>\n"
            ),
            Ok(())
        );
        for broken in [
            "<p>a<b>c</p></b>",
            "<p class=x>y</p>",
            "<p class=\"x\"class=\"y\">y</p>",
            "<p a=\"1\" a=\"2\"></p>",
            "<p>a & b</p>",
            "<p>&nbsp;</p>",
            "<p>1 < 2</p>",
            "<p title=\"a<b\"></p>",
            "<p title=\"&\"></p>",
            "<p>unclosed",
            "<meta charset=\"utf-8\">",
            "<p></p><p></p>",
            "text<p></p>",
            "<p>\u{1}</p>",
            "<p>&#0;</p>",
            "</p>",
            "<p",
            "",
        ] {
            assert!(check_well_formed(broken).is_err(), "accepted {broken:?}");
        }
    }

    #[test]
    fn polylines_have_one_point_per_interval_with_a_value() {
        let iv = intervals(7);
        let sum = summary("h:2000");
        let html = render_test(&report(&iv, Some(&sum), None));
        assert_eq!(points(&html, "rate", "tx"), 7);
        assert_eq!(points(&html, "rate", "rx"), 7);
        assert_eq!(points(&html, "loss", "lost"), 7);
        assert_eq!(points(&html, "loss", "lost-wire"), 7);
        // Probes on intervals 0, 2, 4, 6.
        assert_eq!(points(&html, "rtt", "p50"), 4);
        assert_eq!(points(&html, "rtt", "p90"), 4);
        assert_eq!(points(&html, "rtt", "max"), 4);
        assert!(polyline(&html, "rtt", "tcp").is_none());
        // TCP one way: no loss chart, no rx chart, the kernel's RTT line.
        let iv: Vec<Record> = (0..3)
            .map(|i| {
                rec(
                    Kind::Interval,
                    &[
                        ("elapsed_s", n(i as f64 + 1.0)),
                        ("tx_current_bps", n(1e9)),
                        ("tcp_rtt_ms", if i == 1 { Value::Null } else { n(0.3) }),
                    ],
                )
            })
            .collect();
        let sum = rec(
            Kind::Summary,
            &[("protocol", s("tcp")), ("direction", s("transmit"))],
        );
        let html = render_test(&report(&iv, Some(&sum), None));
        assert_sane(&html);
        assert_eq!(points(&html, "rate", "tx"), 3);
        assert_eq!(points(&html, "rtt", "tcp"), 2);
        assert!(polyline(&html, "rtt", "p50").is_none());
        assert!(polyline(&html, "rate", "rx").is_none() && !html.contains("data-chart=\"loss\""));
        assert!(!html.contains("idle-p50"));
    }

    #[test]
    fn everything_from_records_and_params_is_escaped() {
        let evil = "<script>alert(1)</script>&";
        let iv = intervals(3);
        let sum = summary(evil);
        let err = rec(Kind::Error, &[("message", s(evil)), ("phase", s(evil))]);
        let mut r = report(&iv, Some(&sum), Some(&err));
        r.title = format!("btest to {evil}");
        r.generated = evil.into();
        r.params.push((evil.into(), format!("{evil}\"'\u{7}")));
        let t = target(evil, evil, false, Some(evil));
        let fleet = render_fleet(
            evil,
            evil,
            &r.params.clone(),
            &[FleetEntry {
                target: &t,
                test: r,
            }],
        );
        let r = report(&iv, Some(&sum), Some(&err));
        for html in [render_test(&r), fleet] {
            assert_sane(&html);
            assert!(!html.contains("<script") && !html.contains("&<") && !html.contains("&\""));
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;"));
        }
    }

    #[test]
    fn no_external_references() {
        let iv = intervals(4);
        let sum = summary("h:2000");
        for html in [render_test(&report(&iv, Some(&sum), None)), fleet_page().0] {
            let rest = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for bad in [
                "http://", "https://", "src=", "url(", "@import", "<script", "<img", "<link",
            ] {
                assert!(!rest.contains(bad), "{bad}");
            }
            assert!(html.contains(
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\" />"
            ));
        }
    }

    #[test]
    fn edge_cases_render_without_nan() {
        let sum = summary("h:2000");
        // No intervals.
        let html = render_test(&report(&[], Some(&sum), None));
        assert_sane(&html);
        assert!(html.contains("No intervals.") && !html.contains("<svg"));
        // One interval: one point, marked.
        let one = intervals(1);
        let html = render_test(&report(&one, Some(&sum), None));
        assert_sane(&html);
        assert_eq!(points(&html, "rate", "tx"), 1);
        assert!(html.contains("<circle"));
        // All zero, all null (even the summary missing), huge and non-finite values.
        let zero: Vec<Record> = (0..5).map(|_| rec(Kind::Interval, &[])).collect();
        let huge: Vec<Record> = (1..=5)
            .map(|i| {
                rec(
                    Kind::Interval,
                    &[
                        ("elapsed_s", n(i as f64)),
                        ("tx_current_bps", n(1e11)),
                        ("rx_current_bps", n(if i == 3 { f64::NAN } else { 9.9e10 })),
                        ("lost_packets", Value::Int(u64::MAX)),
                        ("rtt_p50_ms", n(f64::INFINITY)),
                        ("rtt_p90_ms", n(1e6)),
                    ],
                )
            })
            .collect();
        let empty_sum = rec(
            Kind::Summary,
            &[("direction", s("both")), ("tx_avg_bps", n(f64::NAN))],
        );
        for (iv, sum) in [
            (&zero, Some(&empty_sum)),
            (&zero, None),
            (&huge, Some(&sum)),
            (&huge, None),
        ] {
            let html = render_test(&report(iv, sum, None));
            assert_sane(&html);
            assert!(!html.contains("NaN"));
        }
        let html = render_test(&report(&zero, Some(&empty_sum), None));
        assert_eq!(points(&html, "rate", "tx"), 5);
        assert!(
            html.contains(">1 kbps</text>"),
            "the axis of all-zero rates has a top"
        );
        let html = render_test(&report(&huge, None, None));
        assert!(html.contains(">100 Gbps</text>"));
        assert_eq!(points(&html, "rate", "rx"), 4);
        assert_eq!(points(&html, "rtt", "p50"), 0);
        assert_eq!(points(&html, "rtt", "p90"), 5);
        // The fleet with no targets.
        assert_sane(&render_fleet("t", "g", &[], &[]));
    }

    #[test]
    fn fleet_marks_a_failed_target_and_shows_its_error() {
        let (html, _) = fleet_page();
        assert_eq!(html.matches("<tr class=\"failed\">").count(), 1);
        assert_eq!(html.matches("<tr class=\"ok\">").count(), 1);
        let msg = "connect: refused &lt;&amp;&gt; &quot;x&quot; &#39;y&#39;";
        assert!(html.contains("<td>failed</td>"));
        assert!(html.contains(&format!("<td class=\"err\">{msg}</td></tr>")));
        assert!(html.contains(&format!(
            "<strong>Failed</strong> (phase: connect): {msg}</div>"
        )));
        for n in [1, 2] {
            assert!(html.contains(&format!("<a href=\"#target-{n}\">")));
            assert!(html.contains(&format!("<section id=\"target-{n}\">")));
        }
        assert!(html.contains("data-chart=\"fleet-rates\""));
        assert_eq!(html.matches("<rect data-series=\"up\"").count(), 1);
        assert_eq!(html.matches("<rect data-series=\"down\"").count(), 1);
        assert_eq!(html.matches("<html").count(), 1);
        // Target 2 has no test record of its own error: the target record fills in.
        let t = target("x", "h:1", false, Some("timed out"));
        let html = render_fleet(
            "t",
            "g",
            &[],
            &[FleetEntry {
                target: &t,
                test: report(&[], None, None),
            }],
        );
        assert_sane(&html);
        assert!(html.contains("<strong>Failed</strong> (phase: connect): timed out</div>"));
    }
}
