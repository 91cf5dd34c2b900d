//! Integration tests: one binary (ripgrep style), real sockets on loopback, a watchdog on
//! every test.

mod util; // start_server, run_client, watchdog, polling helpers

mod auth; // MD5 and EC-SRP5 end to end, failures keep the server serving
mod caps; // issue 10: --max-rate clamps instead of refusing
mod cli; // the built binary: options, errors, exit codes, --json output
mod export; // --csv, --syslog and --metrics-file through the built binary
#[cfg(feature = "exporter")]
mod exporter; // issue 22: btest exporter over HTTP: /probe, the cache, 404, 503, /metrics
mod faults; // issue 12: client and server killed or stopped mid-test, as processes
mod fleet; // issue 11: btest fleet FILE: matrix, retries, credentials files, reports
mod guards; // issue 12: handshake deadline and per-source caps, login abuse, bounded logs
mod hostile; // garbage, truncation, silence, vanishing clients: freed threads and ports
mod http; // issue 10: --http API, /metrics and the dashboard in headless Chromium
mod interop; // issue 19: servers that are not ours: status-looking chunks, a stray OK, RouterOS 7.x
mod latency; // issue 11: the latency probe: echo, ICMP, idle and loaded figures
mod netem; // 5 % loss on a veth link between two namespaces (root only)
mod packages; // issue 21: .deb (dpkg -i, run, purge), .ipk, dist tarballs, container image
mod public; // issue 18: one source holding slots or 255-connection floods; the process budget
mod quota; // issue 10: byte quotas end and refuse sessions, survive restarts; per-source limits
mod report; // issue 11: --report HTML (parsed, and rendered in headless Chromium), the live view
mod signals; // issue 18: SIGHUP reloads, SIGTERM within 1 s whatever stdout does, records kept
mod soak; // issue 12: 100/1000 sessions against one server process, 100 at once, /proc
mod speedtest; // issue 22: btest speed-test on loopback: records, figures, text, CSV, report
mod speedtest_ns; // issue 22: btest speed-test through a shaped router of three namespaces (root only)
mod stop; // promptness of client and server shutdown
mod tcp; // TCP in every direction, 1 and 4 connections, IPv4 and IPv6, speed limits
mod through; // issue 11: btest through a router of three namespaces (root only)
mod trust; // issue 8: last interval, status bytes, peer counts, no-data failures, records
mod udp; // UDP in every direction, IPv4 and IPv6, speed limits, adaptation
