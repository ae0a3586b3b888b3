#!/usr/bin/env bash
# Create a development certificate authority, a server certificate and per-agent client
# certificates for monitord's TLS / mutual TLS (see docs/security.md). Not for production CAs.
#
#   scripts/dev-ca.sh DIR SERVER_NAME [AGENT_ID...]
#   scripts/dev-ca.sh /tmp/pki localhost web-1 web-2
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt, DIR/server.key (SAN: SERVER_NAME, localhost,
# 127.0.0.1) and DIR/agents/AGENT_ID.crt/.key (CN and SAN URI = the agent id, which monitord binds
# to the agent id the client uses). Keys are EC P-256, mode 0600; existing files are kept.
set -euo pipefail
dir="${1:?usage: dev-ca.sh DIR SERVER_NAME [AGENT_ID...]}"
server="${2:?usage: dev-ca.sh DIR SERVER_NAME [AGENT_ID...]}"
shift 2
command -v openssl >/dev/null || { echo "dev-ca.sh: openssl is required" >&2; exit 1; }
mkdir -p "$dir/agents"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
if [ ! -f "$dir/ca.key" ]; then
    key "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/CN=monitord development CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt"
fi
sign() {  # sign NAME CN SAN EXTKEYUSAGE OUTBASE
    local base="$5"
    [ -f "$base.crt" ] && return 0
    key "$base.key"
    openssl req -new -key "$base.key" -subj "/CN=$2" -out "$base.csr"
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' \
        "$3" "$4" >"$base.ext"
    openssl x509 -req -in "$base.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 -sha256 \
        -extfile "$base.ext" -out "$base.crt" 2>/dev/null
    rm -f "$base.csr" "$base.ext"
}
sign server "$server" "DNS:$server,DNS:localhost,IP:127.0.0.1" serverAuth "$dir/server"
for agent in "$@"; do
    sign agent "$agent" "URI:monitord-agent:$agent" clientAuth "$dir/agents/$agent"
done
chmod 0644 "$dir/ca.crt" "$dir/server.crt" "$dir"/agents/*.crt 2>/dev/null || true
echo "dev-ca.sh: CA $dir/ca.crt, server $dir/server.crt ($server), agents: ${*:-none}"
