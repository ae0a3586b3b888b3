"""``monitorctl``, the operator CLI: send commands to agents, list agents, tail metrics.

Everything goes through Kafka (the commands, command-responses, agent-status and monitoring-data
topics); monitorctl never talks to monitord directly. Commands are built and produced by
:mod:`monitord.command_records`, which the analyzer's rules use too, so both send them the same way;
monitorctl imports nothing of the daemon's internals nor of the analyzer.
"""
