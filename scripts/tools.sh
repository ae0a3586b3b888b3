#!/usr/bin/env bash
# Print the path of a build/test tool, installing it into ~/.cache/monitord/bin first if needed
# (go install from the Go module proxy, pinned versions):
#   scripts/tools.sh nfpm             # packages (scripts/build-packages)
#   scripts/tools.sh node_exporter    # the M4 footprint peer (bench/footprint.py)
#   scripts/tools.sh grpcurl          # health and reflection test (tests/integration/test_operations.py)
set -euo pipefail
bin="${MONITORD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/monitord/bin}"

go_tool() {  # go_tool NAME MODULE/PATH@VERSION
    if [ ! -x "$bin/$1" ]; then
        command -v go >/dev/null || { echo "tools.sh: Go is needed to install $1" >&2; exit 1; }
        echo "tools.sh: installing $1 (${2##*@}) into $bin" >&2
        GOBIN="$bin" go install "$2" >&2
    fi
    echo "$bin/$1"
}

case "${1:-}" in
    nfpm) go_tool nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2 ;;
    node_exporter) go_tool node_exporter github.com/prometheus/node_exporter@v1.12.1 ;;
    grpcurl) go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 ;;
    *) echo "usage: tools.sh nfpm|node_exporter|grpcurl" >&2; exit 2 ;;
esac
