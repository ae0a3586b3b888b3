"""``monitorctl``, the operator CLI: send commands to agents, list agents, tail metrics.

Everything goes through Kafka (the commands, command-responses, agent-status and monitoring-data
topics); monitorctl never talks to monitord directly. ``command_message`` and ``kafka_io`` are
shared with the analyzer's rules, which send commands the same way.
"""
