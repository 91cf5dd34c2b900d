//! Text from outside the program made safe for the sink it goes to: [`Esc`] for log lines and
//! syslog `key=value` values, [`csv_text`] for spreadsheet cells.
//!
//! Why (issue 18): a user name sent in an MD5 or EC-SRP5 login was logged raw, so a name with
//! a newline forged a whole `info: ... authenticated user 'admin'` line; a CSV cell starting
//! with `=` ran as a formula when the file was opened in a spreadsheet. Every string a peer
//! chose (user names, anything read from the wire) goes through one of these before it is
//! written anywhere a human or a line-based tool reads it.
//!
//! Pure: no I/O. Must not: change text that is already safe (so ordinary names and messages
//! read as before), or be used on JSON (record.rs escapes JSON itself, by JSON's rules).

use std::borrow::Cow;
use std::fmt;

/// Displays `self.0` with every character that could break or disguise a log line written as
/// an escape: `\n`, `\r`, `\t`, other C0/C1 controls and DEL as `\xNN`, Unicode format
/// characters that reorder or hide text (bidi overrides and isolates, zero-width characters,
/// line and paragraph separators, BOM) as `\u{NNNN}`, and the backslash itself as `\\`, so an
/// escape in the output always means the peer sent that character.
///
/// ```
/// use btest::text::Esc;
/// assert_eq!(Esc("admin'\ninfo: forged").to_string(), "admin'\\ninfo: forged");
/// assert_eq!(Esc("\u{1b}[31m\u{202e}").to_string(), "\\x1b[31m\\u{202e}");
/// ```
#[derive(Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

/// Characters [`Esc`] rewrites: controls, and the invisible format characters that change how
/// the rest of a line is shown (Unicode 15 `Cf` characters that a terminal or log viewer acts on).
fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c,
            '\u{061c}'                 // Arabic letter mark
            | '\u{180e}'               // Mongolian vowel separator
            | '\u{200b}'..='\u{200f}'  // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202e}'  // line/paragraph separators, bidi embeddings, overrides
            | '\u{2060}'..='\u{206f}'  // word joiner, invisible operators, bidi isolates
            | '\u{feff}'               // BOM / zero-width no-break space
            | '\u{fff9}'..='\u{fffb}') // interlinear annotation
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            f.write_str(&s[start..i])?;
            start = i + c.len_utf8();
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        f.write_str(&s[start..])
    }
}

impl fmt::Debug for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{self}'")
    }
}

/// A text cell for a CSV file, neutralised against formula injection by OWASP's rule: a cell
/// that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which
/// spreadsheets show as text instead of evaluating. Only for string values: numbers the
/// program writes itself (`-1.5`) are not passed here and stay numeric. RFC 4180 quoting is
/// applied afterwards by the CSV writer, unchanged.
pub fn csv_text(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_golden_strings() {
        let cases: &[(&str, &str)] = &[
            ("alice", "alice"),
            ("", ""),
            ("héllo wörld ✓", "héllo wörld ✓"),
            ("admin'\ninfo: forged", "admin'\\ninfo: forged"),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("\u{1b}[2J", "\\x1b[2J"),
            ("del\u{7f}", "del\\x7f"),
            ("nul\0", "nul\\x00"),
            ("c1\u{85}\u{9b}", "c1\\x85\\x9b"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
            ("zw\u{200b}j\u{200d}", "zw\\u{200b}j\\u{200d}"),
            ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
            ("\u{feff}bom", "\\u{feff}bom"),
            ("back\\nslash", "back\\\\nslash"),
        ];
        for (raw, want) in cases {
            assert_eq!(Esc(raw).to_string(), *want, "{raw:?}");
            // the output is one line of visible text
            assert!(!want.chars().any(|c| c.is_control()), "{want:?}");
        }
        assert_eq!(format!("{:?}", Esc("a\nb")), "'a\\nb'");
    }

    #[test]
    fn escape_keeps_padding_out_of_the_way() {
        // Esc is written straight into format strings: it must not lose text around escapes.
        let s = format!("[{}]", Esc("x\ny\u{1b}z"));
        assert_eq!(s, "[x\\ny\\x1bz]");
    }

    #[test]
    fn csv_text_golden_strings() {
        let cases: &[(&str, &str)] = &[
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("alice", "alice"),
            ("a=b", "a=b"),
            ("", ""),
            ("192.0.2.1:2000", "192.0.2.1:2000"),
            ("2026-11-23T13:05:09Z", "2026-11-23T13:05:09Z"),
        ];
        for (raw, want) in cases {
            assert_eq!(csv_text(raw), *want, "{raw:?}");
        }
    }
}
