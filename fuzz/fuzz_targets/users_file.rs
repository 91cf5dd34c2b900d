//! The server's users file (`authio::parse_users`): one `user:password` per line, `#`
//! comments and blank lines skipped, the password everything after the first colon.
//!
//! Input: the file's bytes (invalid UTF-8 is replaced, as a file the server reads with
//! `read_to_string` is text). Properties asserted:
//! - every account has a non-empty, trimmed user name of at most 255 bytes with no `:`, no
//!   line break and no leading `#`, and a password with no line break and no trailing `\r`;
//! - never more accounts than lines;
//! - round trip: writing the accounts back as `user:password` lines and parsing again gives
//!   the same accounts;
//! - a refusal is a usage error (exit code 2) naming the origin and a line that exists.
#![no_main]

use btest::authio::parse_users;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match parse_users(&text, "users.fuzz") {
        Ok(accounts) => {
            assert!(accounts.len() <= lines);
            let mut written = String::new();
            for (u, p) in &accounts {
                assert!(!u.is_empty() && u.len() <= 255, "{u:?}");
                assert_eq!(u.trim(), u);
                assert!(!u.contains([':', '\n']) && !u.starts_with('#'), "{u:?}");
                assert!(!p.contains('\n') && !p.ends_with('\r'), "{p:?}");
                written.push_str(u);
                written.push(':');
                written.push_str(p);
                written.push('\n');
            }
            assert_eq!(
                parse_users(&written, "again").expect("written accounts must parse"),
                accounts
            );
        }
        Err(e) => {
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            let at = msg
                .find("users.fuzz:")
                .unwrap_or_else(|| panic!("no origin in {msg:?}"));
            let n: usize = msg[at + "users.fuzz:".len()..]
                .split(':')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no line number in {msg:?}"));
            assert!((1..=lines).contains(&n), "line {n} of {lines}: {msg:?}");
        }
    }
});
