"""Process exit statuses (sysexits.h), documented in the man pages and the README."""

EX_OK = 0
#: Command-line usage error.
EX_USAGE = 64
#: A required service (e.g. the server, for a run with --iterations) stayed unavailable.
EX_UNAVAILABLE = 69
#: Internal software error (a bug): the traceback is logged.
EX_SOFTWARE = 70
#: Cannot create or lock a required file/directory (the agent's state directory).
EX_CANTCREAT = 73
#: Temporary failure: e.g. the agent stopped with records still unacknowledged.
EX_TEMPFAIL = 75
#: Invalid configuration; systemd units do not restart on it (RestartPreventExitStatus=78).
EX_CONFIG = 78
