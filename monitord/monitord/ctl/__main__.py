"""``python -m monitord.ctl`` = ``monitorctl``."""

import sys

from monitord.ctl.cli import main

sys.exit(main())
