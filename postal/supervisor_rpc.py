"""supervisord's processes over its XML-RPC interface, through the unix socket that
supervisord.conf's `[unix_http_server]` names (the same socket `supervisorctl` uses).

The socket path is read the way supervisord reads it (supervisor/options.py,
`ServerOptions.server_configs_from_parser`: `%(here)s` and `%(ENV_...)s` expanded by
`UnhosedConfigParser.saneget`), and the proxy is built like supervisorctl's
(`ClientOptions.getServerProxy`: a dummy http URL, the transport carries the real address).
"""

from __future__ import annotations

import os
import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.options import UnhosedConfigParser, normalize_path
from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

# The project's own supervisord.conf: the checkout this package is installed from.
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "supervisord.conf"
RPC_TIMEOUT_S = 5.0


class SupervisorUnavailable(Exception):
    """Raised when supervisord cannot be asked: no config, no socket, nobody answering."""


@dataclass(frozen=True)
class ProcessInfo:
    """One process as supervisord reports it (the fields of `supervisorctl status`)."""

    name: str
    state: str
    pid: int | None
    description: str


@dataclass(frozen=True)
class Server:
    """Where supervisord listens according to a config, and the credentials supervisorctl uses."""

    socket: Path
    username: str | None
    password: str | None


def server(config: Path) -> Server:
    """The unix socket (and supervisorctl's credentials, if any) that `config` names."""
    parser = UnhosedConfigParser()
    if not parser.read(str(config)):
        raise SupervisorUnavailable(f"cannot read {config} (give the path with -c)")
    parser.expansions = {f"ENV_{key}": value for key, value in os.environ.items()}
    here = str(config.resolve().parent)
    try:
        raw = parser.saneget("unix_http_server", "file", None, expansions={"here": here})
        username = parser.saneget("supervisorctl", "username", None)
        password = parser.saneget("supervisorctl", "password", None)
    except ValueError as exc:  # a %(ENV_...)s that this environment does not define
        raise SupervisorUnavailable(f"{config}: {exc}") from None
    if not raw:
        raise SupervisorUnavailable(f"{config} has no [unix_http_server] file= (no socket to ask)")
    return Server(socket=Path(normalize_path(raw.strip())), username=username, password=password)


class _BoundedConnection(UnixStreamHTTPConnection):  # type: ignore[misc]  # supervisor is untyped
    """supervisor's unix-socket connection with a timeout, so a hung supervisord cannot hang us
    (supervisor/xmlrpc.py `UnixStreamHTTPConnection.connect` sets none)."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(RPC_TIMEOUT_S)
        self.sock.connect(self.socketfile)


def _proxy(where: Server) -> Any:
    transport = SupervisorTransport(where.username, where.password, f"unix://{where.socket}")

    def connection() -> _BoundedConnection:
        conn = _BoundedConnection("localhost")
        conn.socketfile = str(where.socket)
        return conn

    # SupervisorTransport.request opens connections with self._get_connection() (supervisor/xmlrpc.py)
    transport._get_connection = connection
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def processes(config: Path) -> list[ProcessInfo]:
    """Every process supervisord manages, as `group:name` with its state, PID and description."""
    where = server(config)
    path = where.socket
    try:
        infos = _proxy(where).supervisor.getAllProcessInfo()
    except FileNotFoundError:
        raise SupervisorUnavailable(f"supervisord is not running (no socket at {path})") from None
    except ConnectionRefusedError:
        raise SupervisorUnavailable(f"supervisord is not running (nothing listens on {path})") from None
    except PermissionError:
        raise SupervisorUnavailable(f"no permission to use {path} (it belongs to another user)") from None
    except (OSError, xmlrpc.client.Error) as exc:
        raise SupervisorUnavailable(f"supervisord at {path} did not answer: {exc}") from None
    return [
        ProcessInfo(
            name=info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}",
            state=str(info["statename"]),
            pid=int(info["pid"]) or None,
            description=str(info["description"]),
        )
        for info in infos
    ]
