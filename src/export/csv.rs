//! An append-only CSV results log: one row per finished test (client) or session (server).
//!
//! Owns: RFC 4180 quoting, CRLF line ends, writing the header exactly once, and the UTC
//! RFC 3339 timestamps used in the rows (plus the civil-date conversion `syslog` reuses).
//! Must not: keep the file open between rows (an external rotate or delete is picked up on
//! the next append), rewrite or truncate existing content, or decide which columns exist
//! (the records do), or append rows under a header with other columns (an older btest's
//! file): that append fails with an error that says so.
//!
//! Invariants: every append is a single `write` on an `O_APPEND` handle, so rows from several
//! writers never interleave; the header goes out only when the file is empty at the moment it
//! is opened for that append. Appends from one process are serialized, so two [`CsvLog`]s on
//! the same path never both write a header. Two *processes* appending to a new file at the
//! same instant could still both write one; nothing here locks across processes.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Columns of the client's log, one row per finished test: the `summary` record's fields
/// that are not nested (record.rs owns them).
pub fn client_header() -> Vec<&'static str> {
    crate::record::Record::csv_header(crate::record::Kind::Summary)
}

/// Columns of the server's log, one row per finished (or refused) session: the
/// `session_end` record's fields.
pub fn server_header() -> Vec<&'static str> {
    crate::record::Record::csv_header(crate::record::Kind::SessionEnd)
}

/// RFC 4180 section 2: "Each record is located on a separate line, delimited by a line
/// break (CRLF)."
const LINE_END: &str = "\r\n";

/// Serializes open + empty check + write within this process, so two logs on one path
/// cannot both see an empty file and both write the header.
static APPEND_LOCK: Mutex<()> = Mutex::new(());

/// A CSV file that rows are appended to.
#[derive(Debug, Clone)]
pub struct CsvLog {
    path: PathBuf,
    header: Vec<&'static str>,
}

impl CsvLog {
    /// A log at `path` with these columns. Touches nothing until the first [`append`].
    ///
    /// [`append`]: CsvLog::append
    pub fn new(path: impl Into<PathBuf>, header: Vec<&'static str>) -> Self {
        CsvLog {
            path: path.into(),
            header,
        }
    }

    /// The file this log appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one row, creating the file if missing and writing the header first when the
    /// file is empty. `row` must have one field per header column (fields are quoted here).
    ///
    /// Errors name the path; a wrong field count is `InvalidInput`.
    pub fn append(&self, row: &[String]) -> io::Result<()> {
        if row.len() != self.header.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: row has {} fields but the header has {} columns",
                    self.path.display(),
                    row.len(),
                    self.header.len()
                ),
            ));
        }
        let record = line(row.iter().map(String::as_str));
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.path.display()));

        let _serial = APPEND_LOCK.lock();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(ctx)?;
        // Checked on the handle we write through: a file created, emptied or rotated by
        // someone else before this open still gets its header.
        let empty = file.metadata().map_err(ctx)?.len() == 0;
        let head = line(self.header.iter().copied());
        if !empty {
            check_header(&self.path, &head)?;
        }
        let out = if empty {
            let mut s = head;
            s.push_str(&record);
            s
        } else {
            record
        };
        file.write_all(out.as_bytes()).map_err(ctx)
    }
}

/// The file's first line must be our header: rows under another header would be read into
/// the wrong columns.
fn check_header(path: &Path, head: &str) -> io::Result<()> {
    use std::io::{BufRead, BufReader};
    let mut first = String::new();
    BufReader::new(std::fs::File::open(path)?).read_line(&mut first)?;
    if first.trim_end() == head.trim_end() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: its header has other columns (written by another btest version?); \
             nothing appended: give --csv a new file, or move this one away",
            path.display()
        ),
    ))
}

/// One record: fields quoted as needed, joined by commas, ended by CRLF.
fn line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&quote(f));
    }
    s.push_str(LINE_END);
    s
}

/// Quotes one field per RFC 4180: a field containing a comma, a double quote, CR or LF is
/// enclosed in double quotes with each embedded quote doubled; any other field is unchanged.
pub fn quote(field: &str) -> String {
    if !field.contains([',', '"', '\r', '\n']) {
        return field.to_string();
    }
    let mut s = String::with_capacity(field.len() + 2);
    s.push('"');
    for c in field.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// `t` as an RFC 3339 UTC timestamp with whole seconds, e.g. `2026-11-23T13:05:09Z`
/// (sub-second parts are truncated).
pub fn rfc3339_utc(t: SystemTime) -> String {
    let c = Civil::utc(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// A UTC calendar date and time of day, whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

const SECS_PER_DAY: i64 = 86_400;

impl Civil {
    /// Breaks `t` down in UTC (proleptic Gregorian; instants before 1970 work too).
    pub fn utc(t: SystemTime) -> Civil {
        let secs: i64 = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // Before the epoch: round towards the past so the time of day stays in range.
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                -whole - i64::from(d.subsec_nanos() > 0)
            }
        };
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: tod / 3600,
            minute: tod / 60 % 60,
            second: tod % 60,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), Gregorian calendar.
///
/// The era-based algorithm from Howard Hinnant, "chrono-Compatible Low-Level Date
/// Algorithms" (`civil_from_days`): shift the year to start on March 1 so the leap day is
/// the last day of the year, then split into 400-year eras of 146 097 days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // 719 468 days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146_096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A fresh, empty directory for one test.
    fn scratch(name: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "btest-csv-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const H: [&str; 2] = ["a", "b"];

    fn row(a: &str, b: &str) -> Vec<String> {
        vec![a.to_string(), b.to_string()]
    }

    #[test]
    fn header_once_across_appends() {
        let dir = scratch("once");
        let path = dir.join("log.csv");
        let log = CsvLog::new(&path, H.to_vec());
        for i in 0..3 {
            log.append(&row(&i.to_string(), "x")).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "a,b\r\n0,x\r\n1,x\r\n2,x\r\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn header_once_with_two_logs_on_one_file() {
        let dir = scratch("two");
        let path = dir.join("log.csv");
        let one = CsvLog::new(&path, H.to_vec());
        let two = CsvLog::new(path.clone(), H.to_vec());
        one.append(&row("1", "one")).unwrap();
        two.append(&row("2", "two")).unwrap();
        one.append(&row("3", "one")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "a,b\r\n1,one\r\n2,two\r\n3,one\r\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn header_once_with_concurrent_appends() {
        let dir = scratch("threads");
        let path = dir.join("log.csv");
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = CsvLog::new(&path, H.to_vec());
                s.spawn(move || {
                    for i in 0..25 {
                        log.append(&row(&t.to_string(), &i.to_string())).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 101);
        assert_eq!(lines[0], "a,b");
        assert_eq!(lines.iter().filter(|l| **l == "a,b").count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn existing_file_gets_no_header() {
        let dir = scratch("existing");
        let path = dir.join("log.csv");
        std::fs::write(&path, "a,b\r\n0,0\r\n").unwrap();
        CsvLog::new(&path, H.to_vec())
            .append(&row("1", "2"))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "a,b\r\n0,0\r\n1,2\r\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_with_other_columns_is_left_alone_with_a_clear_error() {
        let dir = scratch("othercols");
        let path = dir.join("log.csv");
        std::fs::write(&path, "old,content\r\n").unwrap();
        let err = CsvLog::new(&path, H.to_vec())
            .append(&row("1", "2"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("other columns"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old,content\r\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_existing_file_gets_header() {
        let dir = scratch("empty");
        let path = dir.join("log.csv");
        std::fs::write(&path, "").unwrap();
        CsvLog::new(&path, H.to_vec())
            .append(&row("1", "2"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\r\n1,2\r\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn special_fields_are_quoted_in_the_file() {
        let dir = scratch("quote");
        let path = dir.join("log.csv");
        CsvLog::new(&path, vec!["x", "y", "z"])
            .append(&[
                "a,b".to_string(),
                "say \"hi\"".to_string(),
                "two\nlines".to_string(),
            ])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "x,y,z\r\n\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn quote_rules() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote(""), "");
        assert_eq!(quote("1.5"), "1.5");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote("\""), "\"\"\"\"");
        assert_eq!(quote("a\nb"), "\"a\nb\"");
        assert_eq!(quote("a\rb"), "\"a\rb\"");
        assert_eq!(quote("héllo wörld"), "héllo wörld");
    }

    #[test]
    fn wrong_field_count_is_rejected_and_writes_nothing() {
        let dir = scratch("count");
        let path = dir.join("log.csv");
        let err = CsvLog::new(&path, H.to_vec())
            .append(&["only".to_string()])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("log.csv"), "{err}");
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_directory_error_names_the_path() {
        let err = CsvLog::new("/nonexistent-btest-dir/log.csv", H.to_vec())
            .append(&row("1", "2"))
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-btest-dir/log.csv"),
            "{err}"
        );
    }

    #[test]
    fn headers_have_the_agreed_columns() {
        let (c, s) = (client_header(), server_header());
        // The first columns stay where scripts expect them; new fields only append.
        assert_eq!(c[..4], ["timestamp", "server", "protocol", "direction"]);
        assert_eq!(s[..2], ["timestamp", "peer"]);
        // the 19 columns of the first CSV layout, then what was added since
        assert_eq!(s[18], "error");
        assert_eq!(c[15], "end_reason");
        assert!(
            !c.contains(&"tcp") && !c.contains(&"thread_cpu_max"),
            "nested: JSON only"
        );
        for h in c.iter().chain(&s) {
            assert_eq!(quote(h), *h, "header names never need quoting");
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339_utc(at(1_709_251_200)), "2024-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(at(4_107_542_400)), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(946_684_799)), "1999-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(at(1_795_439_109)), "2026-11-23T13:05:09Z");
        // Sub-second parts are truncated, not rounded.
        assert_eq!(
            rfc3339_utc(at(1_795_439_109) + Duration::from_millis(999)),
            "2026-11-23T13:05:09Z"
        );
    }

    #[test]
    fn rfc3339_before_epoch() {
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // Walk every day from 1970 to 2100 and check against a naive calendar.
        let (mut y, mut m, mut d) = (1970_i64, 1_u32, 1_u32);
        for days in 0..(131 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
