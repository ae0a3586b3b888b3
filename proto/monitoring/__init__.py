"""The monitoring wire protocol (generated code lives in monitoring.v1)."""
