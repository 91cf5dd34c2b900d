#!/usr/bin/env bash
# `make lint`: the protocol rules live in src/wire/ only (issue 20). Fails when a known rule is
# re-derived elsewhere in src/: the client port = server port + 256 rule (use wire::udp), the
# 0-means-32768 TCP chunk (use Command::effective_tx_size), the UDP payload = tx_size - overhead
# rule (use wire::datagram::payload_len), the BTPROBE1/BTPROBE2 echo datagrams (use
# wire::echo), and the server-view direction bits read by hand (use Direction::we_transmit /
# we_receive with a Side);
# and anywhere outside src/sys/, a native-byte-order conversion (issue 21: big-endian MIPS).
# Comments, string literals and `#[cfg(test)] mod` blocks are not checked: an error message may
# say "port + 256" and a test may write 32768 as data. A line that must break a rule says why
# with `// check-wire: allow (reason)`.
# usage: scripts/check-wire.sh   (prints each offending line as file:line: rule: text; exit 1)
set -euo pipefail
SCRIPT=check-wire
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

# rule name <TAB> extended regex, matched against code with comments and strings removed
RULES=$(
  cat <<'EOF'
udp port offset (wire::udp::client_port)	UDP_CLIENT_PORT_OFFSET
udp port offset (wire::udp::client_port)	[+][[:space:]]*256([^0-9_]|$)|(^|[^0-9_.])256[[:space:]]*[+]
tcp chunk 32768 (Command::effective_tx_size)	(^|[^0-9_.])32_?768([^0-9_]|$)
udp payload (wire::datagram::payload_len)	saturating_sub[(][^)]*overhead
echo datagram (wire::echo)	BTPROBE[12]|ECHO2?_LEN[[:space:]]*:|MAGIC2?[[:space:]]*:[[:space:]]*\[u8
direction by hand (Direction::we_transmit/we_receive)	[.]server_(rx|tx)[(][)]
EOF
)

# Prints "file<TAB>line<TAB>code" for every code line of a Rust file, with comments and string
# contents blanked (strings may span lines), up to a `#[cfg(test)]` followed by `mod`.
code_lines() {
  awk -v f="$1" '
    BEGIN { instr = 0; inblock = 0 }
    prev ~ /^#\[cfg\(test\)\]/ && $0 ~ /^mod / { exit }
    { prev = $0 }
    /check-wire: allow/ { next }
    {
      line = $0; out = ""; n = length(line); i = 1
      while (i <= n) {
        c = substr(line, i, 1); d = substr(line, i, 2)
        if (inblock) { if (d == "*/") { inblock = 0; i += 2 } else i++; continue }
        if (instr) {
          if (c == "\\") { i += 2; continue }
          if (c == "\"") { instr = 0; out = out "\"" }
          i++; continue
        }
        if (d == "//") break
        if (d == "/*") { inblock = 1; i += 2; continue }
        # a char literal: the quote inside it does not open a string
        if (c == "'\''" && substr(line, i + 2, 1) == "'\''") { out = out "'\'''\''"; i += 3; continue }
        if (c == "'\''" && substr(line, i + 1, 1) == "\\" && substr(line, i + 3, 1) == "'\''") { out = out "'\'''\''"; i += 4; continue }
        if (c == "\"") { instr = 1; out = out "\""; i++; continue }
        out = out c; i++
      }
      if (out ~ /[^[:space:]]/) printf "%s\t%d\t%s\n", f, NR, out
    }' "$1"
}

bad=0
while IFS= read -r -d '' file; do
  code=$(code_lines "$file")
  [ -n "$code" ] || continue
  while IFS=$'\t' read -r name re; do
    hits=$(awk -F'\t' -v re="$re" '$3 ~ re { printf "%s:%s: %s\n", $1, $2, $3 }' <<<"$code")
    if [ -n "$hits" ]; then
      while IFS= read -r h; do
        say "${h%%: *}: protocol rule outside src/wire/, $name: ${h#*: }"
      done <<<"$hits"
      bad=1
    fi
  done <<<"$RULES"
done < <(find src -name '*.rs' -not -path 'src/wire/*' -print0 | sort -z)
[ "$bad" = 0 ] || die "move the rule into src/wire/ and call it (or mark the line, saying why)"

# Byte order (issue 21): every multi-byte value on the wire or in a file is written and read in
# an explicit order (to_le_bytes, from_be_bytes, ...), so the big-endian MIPS image speaks the
# same bytes as x86. Native-order conversions are refused everywhere outside src/sys/ (whose
# kernel structures are native by definition), src/wire/ included.
while IFS= read -r -d '' file; do
  hits=$(code_lines "$file" | awk -F'\t' '$3 ~ /(to|from)_ne_bytes|transmute/ { printf "%s:%s: %s\n", $1, $2, $3 }')
  if [ -n "$hits" ]; then
    while IFS= read -r h; do
      say "${h%%: *}: native byte order outside src/sys/ (use to_le_bytes/to_be_bytes): ${h#*: }"
    done <<<"$hits"
    bad=1
  fi
done < <(find src -name '*.rs' -not -path 'src/sys/*' -print0 | sort -z)
[ "$bad" = 0 ] || die "write the byte order out (or mark the line, saying why)"
say "ok: no known protocol rule outside src/wire/, no native byte order outside src/sys/"
