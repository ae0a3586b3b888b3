"""monitor-agentd configuration: one frozen dataclass per section of /etc/monitor-agentd/agent.yaml.

etc/monitor-agentd/agent.yaml documents the same keys; tests/unit/test_example_configs.py checks
that the two agree.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from monitoring_common import untrusted
from monitoring_common.config_loader import InvalidField, setting, split_hostport
from monitoring_common.sections import LoggingSection, MetricsSection
from monitoring_common.transport import MIN_CLIENT_PING_INTERVAL_SECONDS
from monitoring_common.untrusted import ID

DEFAULT_PATH = "/etc/monitor-agentd/agent.yaml"


@dataclass(frozen=True)
class AgentSection:
    """Identity of this agent and where its server is."""

    id: str = setting("", "Agent id (Kafka record key). Empty: the host name.")
    servers: tuple[str, ...] = setting(
        factory=lambda: ("127.0.0.1:50051",),
        doc="monitord addresses (HOST:PORT), tried in turn when a connection fails.",
    )
    labels: Mapping[str, str] = setting(
        factory=lambda: MappingProxyType({}), doc="Free-form labels attached to every metrics record."
    )
    state_dir: str = setting(
        "/var/lib/monitor-agentd", "Directory for the agent's durable state (sequence number, spool).", min=1
    )

    def __post_init__(self) -> None:
        if not self.servers:
            raise InvalidField("servers", "at least one server address is required")
        for address in self.servers:
            split_hostport("servers", address)

    @property
    def effective_id(self) -> str:
        """``id``, or the host name when it is empty."""
        return self.id or socket.gethostname()


@dataclass(frozen=True)
class CollectionSection:
    """What is collected and how often."""

    mode: Literal["real", "mock"] = setting(
        "real", "'real' reads the host with psutil; 'mock' produces deterministic synthetic metrics."
    )
    interval_seconds: float = setting(10.0, "Seconds between two collections.", min=0.05, max=86_400)
    iterations: int = setting(0, "Stop after this many collections (0 = run forever).", min=0)
    ignore_fstypes: tuple[str, ...] = setting(
        factory=lambda: ("tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup2", "nsfs", "autofs"),
        doc="Filesystem types left out of disk usage.",
    )
    max_disks: int = setting(64, "At most this many filesystems/disks per record.", min=0, max=4096)
    max_interfaces: int = setting(64, "At most this many network interfaces per record.", min=0, max=4096)


@dataclass(frozen=True)
class AgentTlsSection:
    """Transport security towards monitord (docs/security.md)."""

    mode: Literal["mtls", "tls", "plaintext"] = setting(
        "mtls",
        "mtls: verify the server and present this agent's certificate (its identity); tls: verify the "
        "server only (identify with token_file); plaintext: no encryption (explicit only; warned).",
    )
    ca_file: str = setting(
        "/etc/monitor-agentd/tls/ca.crt", "PEM CA bundle that signs the server certificate; empty: system roots."
    )
    cert_file: str = setting("/etc/monitor-agentd/tls/agent.crt", "PEM client certificate (mtls).")
    key_file: str = setting("/etc/monitor-agentd/tls/agent.key", "PEM private key of the client certificate (mtls).")
    server_name: str = setting("", "Expected name in the server certificate; empty: the host part of the address.")
    token_file: str = setting(
        "", "File holding this agent's token, sent as 'authorization: Bearer <token>' (instead of a certificate)."
    )


@dataclass(frozen=True)
class ConnectionSection:
    """Connecting, reconnecting and waiting for acks."""

    tls: AgentTlsSection = setting(factory=AgentTlsSection, doc="Transport security and identity.")
    connect_timeout_seconds: float = setting(10.0, "Deadline for connecting and registering.", min=0.1, max=600)
    backoff_initial_seconds: float = setting(1.0, "First reconnect delay.", min=0.01, max=3600)
    backoff_multiplier: float = setting(2.0, "Each failed attempt multiplies the delay by this.", min=1.0, max=10)
    backoff_max_seconds: float = setting(60.0, "Upper bound of the reconnect delay.", min=0.01, max=86_400)
    backoff_jitter: float = setting(
        1.0, "Fraction of the delay that is randomised: 1.0 = full jitter (uniform 0..delay), 0 = none.", min=0, max=1
    )
    healthy_after_seconds: float = setting(
        30.0, "A stream must stay up this long before the reconnect delay is reset.", min=0, max=3600
    )
    keepalive_seconds: float = setting(
        20.0,
        f"HTTP/2 keepalive ping interval; monitord accepts pings down to every {MIN_CLIENT_PING_INTERVAL_SECONDS} s.",
        min=MIN_CLIENT_PING_INTERVAL_SECONDS,
        max=3600,
    )
    keepalive_timeout_seconds: float = setting(
        10.0, "A ping unanswered this long means the connection is dead.", min=1, max=600
    )
    retry_nacked_seconds: float = setting(
        2.0, "After a negative ack (Kafka unavailable) resend the record after this delay.", min=0.01, max=3600
    )
    ack_timeout_seconds: float = setting(
        60.0, "With --iterations: how long to wait for the last acks before giving up (exit 75).", min=0.1, max=86_400
    )
    compression: Literal["none", "gzip"] = setting(
        "gzip", "Compression of what the agent sends (records, heartbeats, command output); takes effect on reconnect."
    )
    max_receive_message_bytes: int = setting(
        1_048_576,
        "Largest message accepted from the server (a command with all its arguments must fit); a larger"
        " one ends the stream (RESOURCE_EXHAUSTED) and the agent reconnects; takes effect on reconnect.",
        min=65_536,
        max=64 * 1024 * 1024,
    )
    max_unacknowledged_responses: int = setting(
        10_000,
        "Command responses the server has not acknowledged yet; while this many wait, a further command"
        " is dropped unanswered (the server holds or expires it): a server that sends but never acks"
        " cannot grow the agent's memory.",
        min=16,
        max=1_000_000,
    )

    def __post_init__(self) -> None:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise InvalidField("backoff_max_seconds", "must be >= backoff_initial_seconds")


@dataclass(frozen=True)
class SpoolSection:
    """Records kept until the server acknowledged them."""

    max_records: int = setting(
        100_000,
        "Unacknowledged records kept; beyond it the oldest are dropped, counted and reported.",
        min=1,
        max=10_000_000,
    )
    memory_records: int = setting(
        1000,
        "The newest unacknowledged records also kept parsed in memory; older ones are read back from disk.",
        min=1,
        max=1_000_000,
    )
    fsync: bool = setting(
        True,
        "fsync every spooled record (survives power loss, not only a crash of the agent).",
    )
    segment_records: int = setting(1000, "Records per spool segment file.", min=10, max=1_000_000)


#: The built-in commands (monitor_agentd.builtins implements them).
BUILTIN_COMMANDS = ("ping", "collect", "set-interval", "info")
#: Runs its arguments with /bin/sh -c, only with ``commands.allow_shell: true``.
SHELL_COMMAND = "shell"
#: Names a configured definition may not shadow.
RESERVED_COMMAND_NAMES = (*BUILTIN_COMMANDS, SHELL_COMMAND)
#: A parameter placeholder in a command argv template: ``{name}``.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: A valid command id (``fullmatch``): 1 to 128 characters of letters, digits and ``._@:-``, starting
#: with a letter or digit -- the one id pattern monitord applies too. A command with any other id is
#: dropped unanswered (nothing could correlate an answer) and never stored.
COMMAND_ID = ID


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter of a command template; arguments bind to parameters in order."""

    name: str = setting("", "Placeholder name, used as {name} inside argv elements.", min=1)
    pattern: str = setting(".*", "Regular expression the whole value must match (re.fullmatch).")
    max_length: int = setting(256, "Longest value accepted, in characters.", min=0, max=65_536)
    allow_option_like: bool = setting(False, "Accept values starting with '-' (otherwise REJECTED).")
    allow_dotdot: bool = setting(False, "Accept values containing '..' (otherwise REJECTED).")

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise InvalidField("pattern", f"invalid regular expression: {exc}") from None


@dataclass(frozen=True)
class CommandSpec:
    """A named command: an argv template, never run through a shell."""

    argv: tuple[str, ...] = setting(
        factory=tuple,
        doc="Program (absolute path) and arguments. {param} placeholders are replaced by the "
        "validated argument, literally, inside the element: no splitting, no shell.",
    )
    params: tuple[ParamSpec, ...] = setting(factory=tuple, doc="Declared parameters, in argument order.")
    timeout_seconds: float = setting(0.0, "Execution timeout; 0 = commands.default_timeout_seconds.", min=0, max=86_400)
    description: str = setting("", "What the command is for (shown by the info command).")

    def __post_init__(self) -> None:
        if not self.argv:
            raise InvalidField("argv", "must name a program")
        if not self.argv[0].startswith("/"):
            raise InvalidField("argv", f"the program must be an absolute path, got {self.argv[0]!r}")
        declared = [p.name for p in self.params]
        if len(set(declared)) != len(declared):
            raise InvalidField("params", "parameter names must be unique")
        used = {m for element in self.argv for m in PLACEHOLDER.findall(element)}
        if used - set(declared):
            raise InvalidField("argv", f"undeclared placeholder(s): {', '.join(sorted(used - set(declared)))}")
        if set(declared) - used:
            raise InvalidField("params", f"parameter(s) not used in argv: {', '.join(sorted(set(declared) - used))}")


@dataclass(frozen=True)
class CommandsSection:
    """What commands this agent may run, and how."""

    allow_shell: bool = setting(
        False, "Enable the 'shell' command (runs its arguments with /bin/sh -c). Dangerous; warned at every start."
    )
    max_concurrent: int = setting(4, "Commands running at once; more are REJECTED.", min=1, max=1024)
    default_timeout_seconds: float = setting(
        30.0, "Timeout when neither the command nor its definition sets one.", min=0.1, max=86_400
    )
    max_timeout_seconds: float = setting(3600.0, "Upper bound of any requested timeout.", min=0.1, max=86_400)
    output_limit_bytes: int = setting(
        65_536,
        "Per stream (stdout, stderr): beyond it the middle is cut, keeping head and tail.",
        min=64,
        max=16 * 1024 * 1024,
    )
    kill_grace_seconds: float = setting(
        2.0, "After SIGTERM to a timed-out command's process group, SIGKILL follows after this.", min=0, max=60
    )
    # The bounds of a command from the server, checked before anything of it is kept; monitord's
    # defaults (monitoring_common.untrusted), so what monitord passes on the agent accepts.
    max_name_chars: int = setting(
        untrusted.DEFAULT_MAX_COMMAND_NAME_CHARS,
        "A command whose name is longer (characters) is REJECTED, and not stored.",
        min=1,
        max=4096,
    )
    max_requested_by_chars: int = setting(
        untrusted.DEFAULT_MAX_REQUESTED_BY_CHARS,
        "A command whose requested_by is longer (characters) is REJECTED, and not stored.",
        min=1,
        max=4096,
    )
    max_args: int = setting(
        untrusted.DEFAULT_MAX_COMMAND_ARGS,
        "A command with more arguments is REJECTED, and not stored.",
        min=0,
        max=10_000,
    )
    max_arg_bytes: int = setting(
        untrusted.DEFAULT_MAX_COMMAND_ARG_BYTES,
        "A command with a longer argument (UTF-8 bytes) is REJECTED, and not stored.",
        min=1,
        max=1_048_576,
    )
    definitions: Mapping[str, CommandSpec] = setting(
        factory=lambda: MappingProxyType({}),
        doc="Named commands: name -> {argv, params, timeout_seconds, description}.",
    )

    def __post_init__(self) -> None:
        for name in self.definitions:
            if name in RESERVED_COMMAND_NAMES:
                raise InvalidField("definitions", f"{name!r} is a built-in command name")


@dataclass(frozen=True)
class AgentConfig:
    """The whole of agent.yaml."""

    agent: AgentSection = setting(factory=AgentSection, doc="Identity and servers.")
    collection: CollectionSection = setting(factory=CollectionSection, doc="Collection.")
    connection: ConnectionSection = setting(factory=ConnectionSection, doc="Connection management.")
    spool: SpoolSection = setting(factory=SpoolSection, doc="Unacknowledged records.")
    commands: CommandsSection = setting(factory=CommandsSection, doc="Command execution.")
    logging: LoggingSection = setting(factory=LoggingSection, doc="Logging.")
    metrics: MetricsSection = setting(factory=MetricsSection, doc="Prometheus metrics (off by default).")
