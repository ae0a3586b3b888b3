"""The analysis consumer (``monitor-analyzer``): reads monitoring-data and command-responses."""
