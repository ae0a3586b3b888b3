"""The analysis consumer (``monitor-analyzer``): reads monitoring-data and command-responses.

It imports nothing of the daemon's internals nor of monitorctl: records, config, kafka_clients,
command_records and errors are what the three share.
"""
