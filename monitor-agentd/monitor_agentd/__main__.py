"""``python -m monitor_agentd``."""

from monitor_agentd.cli import main

raise SystemExit(main())
