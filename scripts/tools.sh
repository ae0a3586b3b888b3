#!/usr/bin/env bash
# Print the path of a build/test tool, installing it into ~/.cache/monitord/bin first if needed.
#   scripts/tools.sh nfpm             # nfpm from the Go module proxy (go install)
#   scripts/tools.sh node_exporter    # Prometheus node_exporter, the same way (bench/footprint.py)
set -euo pipefail
bin="${MONITORD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/monitord/bin}"
case "${1:-}" in
    nfpm)
        if [ ! -x "$bin/nfpm" ]; then
            command -v go >/dev/null || { echo "tools.sh: Go is needed to install nfpm" >&2; exit 1; }
            echo "tools.sh: installing nfpm v2.45.2 into $bin" >&2
            GOBIN="$bin" go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2 >&2
        fi
        echo "$bin/nfpm"
        ;;
    node_exporter)
        if [ ! -x "$bin/node_exporter" ]; then
            command -v go >/dev/null || { echo "tools.sh: Go is needed to install node_exporter" >&2; exit 1; }
            echo "tools.sh: installing node_exporter v1.12.1 into $bin" >&2
            GOBIN="$bin" go install github.com/prometheus/node_exporter@v1.12.1 >&2
        fi
        echo "$bin/node_exporter"
        ;;
    *) echo "usage: tools.sh nfpm|node_exporter" >&2; exit 2 ;;
esac
