#!/usr/bin/env bash
# Makes a self-signed certificate and key for the TLS demo, when they are missing:
# DIR/tls.crt and DIR/tls.key (ECDSA P-256, 90 days, names localhost, 127.0.0.1, ::1 and any
# extra DNS names given). For demos and tests only: production certificates come from your CA
# or ACME client, mounted from a Secret (see the README, "TLS").
#
#   scripts/gen-demo-cert.sh [DIR] [DNS_NAME...]      # DIR defaults to conf/tls
set -euo pipefail
dir=${1:-conf/tls}
shift || true
if [ -s "$dir/tls.crt" ] && [ -s "$dir/tls.key" ]; then
    exit 0
fi
mkdir -p "$dir"
san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do san="$san,DNS:$name"; done
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 \
    -subj "/CN=localhost" -addext "subjectAltName=$san" \
    -keyout "$dir/tls.key.tmp" -out "$dir/tls.crt.tmp" 2>/dev/null
# The key before the certificate: a running tollgate that polls the pair sees at most one
# poll of mismatch, which it looks at again before refusing.
# Readable by all: the compose demo bind-mounts it for the container's user (uid 10001). Only
# because it is a throwaway demo key; a real key belongs in a Secret with tight permissions.
chmod 0644 "$dir/tls.key.tmp" "$dir/tls.crt.tmp"
mv "$dir/tls.key.tmp" "$dir/tls.key"
mv "$dir/tls.crt.tmp" "$dir/tls.crt"
echo "== generated a self-signed demo certificate in $dir (tls.crt, tls.key)"
