"""``python -m monitord``."""

from monitord.cli import main

raise SystemExit(main())
