"""monitor-agentd: the per-host agent (psutil metrics over one persistent gRPC stream)."""

__version__ = "0.1.0"
