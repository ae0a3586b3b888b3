#!/usr/bin/env bash
# Regenerate the Python protobuf/gRPC code (and .pyi stubs) from proto/monitoring/v1/*.proto.
# Usage: scripts/gen-proto.sh [OUTDIR]   (default: proto/, i.e. in place)
# The generated files are committed; tests/unit/proto/test_generated_code.py fails when they are stale.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
out="${1:-$here/proto}"
bindir="$(dirname "$py")"
mkdir -p "$out"
PATH="$bindir:$PATH" "$py" -m grpc_tools.protoc -I "$here/proto" \
    --python_out="$out" --mypy_out="$out" \
    --grpc_python_out="$out" --mypy_grpc_out="$out" \
    "$here"/proto/monitoring/v1/*.proto
