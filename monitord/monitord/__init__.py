"""monitord: the central server of the monitoring system (gRPC streams in, Kafka out)."""

__version__ = "0.1.0"
