//! The live terminal view of a single client test (issues 11, 19): a bar graph under the
//! interval lines, three rows high per direction that carries data, as wide as the terminal
//! allows (one column per interval, the newest on the right), with the current and highest
//! rate beside it and the last probe RTT; redrawn after each interval.
//!
//! Why a graph of rows: the one-line sparkline of issue 11 had three or four characters of
//! history in a short test and one-eighth steps, too coarse to read (issue 19).
//!
//! Pure: renders text only. The reporter decides when it is shown (stdout a terminal, text
//! output, `--live`), writes it and clears it. Must not: read the clock or the terminal.

use std::collections::VecDeque;

use crate::units::format_rate;

/// Eighth blocks, lowest first; a cell holds 0-8 eighths.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Rows of graph per direction.
pub const ROWS: usize = 3;

/// Label before the graph (`tx `) and figures after it (` 999.9 Mbps` / ` max 999.9 Mbps`).
const LABEL: usize = 3;
const FIGURES: usize = 16;

/// Rate history and the layout for one terminal width.
#[derive(Debug, Clone)]
pub struct LiveView {
    tx: VecDeque<f64>,
    rx: VecDeque<f64>,
    rtt_ms: Option<f64>,
    show_tx: bool,
    show_rx: bool,
    columns: usize,
    /// Lines on screen from the last render (what [`LiveView::clear`] erases).
    drawn: usize,
}

impl LiveView {
    /// A view for a terminal `columns` wide, showing the directions the test carries.
    pub fn new(columns: u16, show_tx: bool, show_rx: bool) -> LiveView {
        LiveView {
            tx: VecDeque::new(),
            rx: VecDeque::new(),
            rtt_ms: None,
            show_tx,
            show_rx,
            columns: usize::from(columns.max(20)),
            drawn: 0,
        }
    }

    /// Graph columns: the line less the label and the figures (and one column, so a line
    /// never reaches the terminal's edge and wraps), at least 8.
    fn cells(&self) -> usize {
        self.columns.saturating_sub(LABEL + FIGURES + 1).max(8)
    }

    /// One interval's rates (bit/s) and median probe RTT.
    pub fn push(&mut self, tx_bps: f64, rx_bps: f64, rtt_ms: Option<f64>) {
        let keep = self.cells();
        for (h, v) in [(&mut self.tx, tx_bps), (&mut self.rx, rx_bps)] {
            h.push_back(if v.is_finite() { v.max(0.0) } else { 0.0 });
            while h.len() > keep {
                h.pop_front();
            }
        }
        if rtt_ms.is_some() {
            self.rtt_ms = rtt_ms;
        }
    }

    /// `ROWS` rows of bars, top first, `width` cells each, right-aligned (newest right).
    /// Scaled to the highest interval shown; a non-zero rate shows at least one eighth.
    fn graph(h: &VecDeque<f64>, width: usize) -> Vec<String> {
        let max = h.iter().copied().fold(0.0, f64::max);
        let eighths: Vec<usize> = h
            .iter()
            .map(|&v| {
                if max <= 0.0 || v <= 0.0 {
                    0
                } else {
                    ((v / max * (ROWS * 8) as f64).round() as usize).clamp(1, ROWS * 8)
                }
            })
            .collect();
        let pad = width.saturating_sub(eighths.len());
        (0..ROWS)
            .map(|row| {
                let floor = (ROWS - 1 - row) * 8;
                let mut line = " ".repeat(pad);
                for &e in &eighths {
                    line.push(match e.saturating_sub(floor).min(8) {
                        0 => ' ',
                        k => BARS[k - 1],
                    });
                }
                line
            })
            .collect()
    }

    /// The view, lines joined by `\n`, without a final newline; no line as wide as the
    /// terminal. Remembers its height for [`LiveView::clear`].
    pub fn render(&mut self) -> String {
        let width = self.cells();
        let mut lines = Vec::new();
        let dirs: Vec<_> = [
            (self.show_tx, "tx", &self.tx),
            (self.show_rx, "rx", &self.rx),
        ]
        .into_iter()
        .filter(|d| d.0)
        .collect();
        for (i, &(_, name, h)) in dirs.iter().enumerate() {
            let last = h.back().copied().unwrap_or(0.0);
            let max = h.iter().copied().fold(0.0, f64::max);
            let rtt = match self.rtt_ms {
                Some(r) if i + 1 == dirs.len() => format!(" rtt {r:.2}ms"),
                _ => String::new(),
            };
            let figures = [
                format!(" {:>11}", format_rate(last)),
                format!(" max {}", format_rate(max)),
                rtt,
            ];
            for (row, g) in Self::graph(h, width).into_iter().enumerate() {
                let label = if row == 0 { name } else { "" };
                let line = format!("{label:<LABEL$}{g}{}", figures[row]);
                lines.push(line.chars().take(self.columns - 1).collect::<String>());
            }
        }
        self.drawn = lines.len();
        lines.join("\n")
    }

    /// Erases what the last render drew and leaves the cursor where it began (ANSI: CR and
    /// erase line, then up and erase for each line above); empty when nothing is drawn.
    pub fn clear(&mut self) -> String {
        let mut s = String::new();
        if self.drawn > 0 {
            s.push_str("\r\x1b[2K");
            for _ in 1..self.drawn {
                s.push_str("\x1b[1A\x1b[2K");
            }
        }
        self.drawn = 0;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden: both directions and the RTT in a 40-column terminal (20 graph columns).
    #[test]
    fn golden_graph() {
        let mut v = LiveView::new(40, true, true);
        for r in [0.0, 25e6, 50e6, 100e6, 75e6] {
            v.push(r, 1e9, Some(1.25));
        }
        assert_eq!(
            v.render(),
            [
                "tx                   █▂   75.0 Mbps",
                "                    ▄██ max 100.0 Mbps",
                "                   ▆███",
                "rx                █████   1.00 Gbps",
                "                  █████ max 1.00 Gbps",
                "                  █████ rtt 1.25ms",
            ]
            .join("\n")
        );
        assert_eq!(
            v.clear(),
            "\r\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K"
        );
        assert_eq!(v.clear(), "", "nothing drawn: nothing to erase");
    }

    #[test]
    fn the_graph_uses_the_width_and_never_reaches_the_edge() {
        for cols in [20u16, 40, 80, 200] {
            let mut v = LiveView::new(cols, true, true);
            for i in 0..500 {
                v.push(f64::from(i) * 1e6, 1e9, Some(1.25));
            }
            let text = v.render();
            assert_eq!(text.lines().count(), 2 * ROWS);
            for l in text.lines() {
                assert!(l.chars().count() < usize::from(cols.max(20)), "{cols}: {l}");
            }
            if cols >= 80 {
                // one column per interval: the whole line but label and figures
                let bars = text
                    .lines()
                    .nth(ROWS - 1)
                    .unwrap()
                    .chars()
                    .filter(|c| BARS.contains(c))
                    .count();
                assert_eq!(bars, usize::from(cols) - LABEL - FIGURES - 1, "{text}");
                assert!(text.contains("rtt 1.25ms"), "{text}");
            }
        }
    }

    #[test]
    fn odd_values_do_not_panic() {
        let mut v = LiveView::new(80, true, false);
        v.push(f64::NAN, f64::INFINITY, None);
        v.push(-5.0, 0.0, None);
        let text = v.render();
        assert_eq!(text.lines().count(), ROWS);
        assert!(text.starts_with("tx "), "{text}");
    }
}
