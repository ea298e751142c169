#!/usr/bin/env bash
# Turns raw API keys into `keys_file` lines, so that a raw key never reaches the file:
#
#   scripts/keys.sh TIER [EXPIRES] < ids-and-keys >> keys.tsv
#
# Each input line is `id<TAB or space>raw-key`; each output line is
# `id<TAB>TIER<TAB>sha256-hex[<TAB>EXPIRES]` (EXPIRES: RFC 3339, e.g. 2027-01-01T00:00:00Z).
# Surrounding whitespace is not part of a key, as in tollgate's own digest. Blank lines and
# lines starting with `#` are skipped. Uses python3 when present (a million keys in seconds),
# otherwise sha256sum once per key.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || "$1" == -* ]]; then
  echo "usage: $0 TIER [EXPIRES] < ids-and-keys >> keys.tsv" >&2
  exit 2
fi
tier=$1
expires=${2:-}

if command -v python3 >/dev/null 2>&1; then
  exec python3 -c '
import hashlib, sys
tier, expires = sys.argv[1], sys.argv[2]
tail = "\t" + expires if expires else ""
out = sys.stdout
for n, line in enumerate(sys.stdin.buffer, 1):
    line = line.strip()
    if not line or line.startswith(b"#"):
        continue
    parts = line.split(None, 1)
    if len(parts) != 2:
        sys.exit(f"line {n}: expected an id and a key")
    ident, key = parts[0].decode(), parts[1].strip()
    out.write(f"{ident}\t{tier}\t{hashlib.sha256(key).hexdigest()}{tail}\n")
' "$tier" "$expires"
fi

n=0
while IFS= read -r line || [[ -n "$line" ]]; do
  n=$((n + 1))
  line=$(printf '%s' "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
  [[ -z "$line" || "$line" == \#* ]] && continue
  id=${line%%[[:space:]]*}
  key=${line#"$id"}
  key=$(printf '%s' "$key" | sed -e 's/^[[:space:]]*//')
  if [[ -z "$key" ]]; then
    echo "line $n: expected an id and a key" >&2
    exit 1
  fi
  sum=$(printf '%s' "$key" | sha256sum)
  printf '%s\t%s\t%s%s\n' "$id" "$tier" "${sum%% *}" "${expires:+	$expires}"
done
