"""Generated from monitoring.proto by scripts/gen-proto.sh — do not edit by hand."""
