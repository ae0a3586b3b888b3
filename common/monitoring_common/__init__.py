"""Plumbing shared by monitord and monitor-agentd (config loading, logging, exit statuses)."""
