//! The live terminal view of a single client test (issue 11): one line under the interval
//! lines, redrawn after each interval, with a rate sparkline per direction that carries data
//! and the last probe RTT.
//!
//! Pure: renders text only. The reporter decides when it is shown (stdout a terminal, text
//! output, `--live`), writes it and clears it. Must not: read the clock or the terminal.

use std::collections::VecDeque;

use crate::units::format_rate;

/// Returns to the line's start and erases it (ANSI CR + EL 2).
pub const CLEAR_LINE: &str = "\r\x1b[2K";

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Rate history and the layout for one terminal width.
#[derive(Debug, Clone)]
pub struct LiveView {
    tx: VecDeque<f64>,
    rx: VecDeque<f64>,
    rtt_ms: Option<f64>,
    show_tx: bool,
    show_rx: bool,
    columns: usize,
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
        }
    }

    /// History cells per direction: what is left of the line after the labels and figures
    /// (`tx ` + ` 999.9 Mbps` = 15 per direction, ` | rtt 999.99ms` = 16), at most 60.
    fn cells(&self) -> usize {
        let dirs = usize::from(self.show_tx) + usize::from(self.show_rx);
        let fixed = 15 * dirs + 16 + 3 * dirs.saturating_sub(1) + 1;
        (self.columns.saturating_sub(fixed) / dirs.max(1)).clamp(1, 60)
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

    fn spark(h: &VecDeque<f64>) -> String {
        let max = h.iter().copied().fold(0.0, f64::max);
        h.iter()
            .map(|&v| {
                if max <= 0.0 {
                    BARS[0]
                } else {
                    let i = (v / max * (BARS.len() - 1) as f64).round() as usize;
                    BARS[i.min(BARS.len() - 1)]
                }
            })
            .collect()
    }

    /// The line, without a newline; never wider than the terminal.
    pub fn render(&self) -> String {
        let mut parts = Vec::new();
        for (show, name, h) in [
            (self.show_tx, "tx", &self.tx),
            (self.show_rx, "rx", &self.rx),
        ] {
            if show {
                let last = h.back().copied().unwrap_or(0.0);
                parts.push(format!(
                    "{name} {} {:>11}",
                    Self::spark(h),
                    format_rate(last)
                ));
            }
        }
        let mut line = parts.join(" | ");
        if let Some(r) = self.rtt_ms {
            line.push_str(&format!(" | rtt {r:.2}ms"));
        }
        line.chars().take(self.columns.saturating_sub(1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_highest_interval() {
        let mut v = LiveView::new(120, true, false);
        for r in [0.0, 50e6, 100e6] {
            v.push(r, 0.0, None);
        }
        let line = v.render();
        assert!(line.starts_with("tx ▁▅█ "), "{line}");
        assert!(line.contains("100"), "{line}");
        assert!(!line.contains("rx"), "{line}");
    }

    #[test]
    fn both_directions_and_rtt_fit_the_width() {
        for cols in [20u16, 40, 80, 200] {
            let mut v = LiveView::new(cols, true, true);
            for i in 0..500 {
                v.push(f64::from(i) * 1e6, 1e9, Some(1.25));
            }
            let line = v.render();
            assert!(
                line.chars().count() < usize::from(cols.max(20)),
                "{cols}: {line}"
            );
            if cols >= 80 {
                assert!(
                    line.contains("rx ") && line.contains("rtt 1.25ms"),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn odd_values_do_not_panic() {
        let mut v = LiveView::new(80, true, true);
        v.push(f64::NAN, f64::INFINITY, None);
        v.push(-5.0, 0.0, None);
        let line = v.render();
        assert!(line.starts_with("tx ▁▁"), "{line}");
    }
}
