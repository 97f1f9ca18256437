"""What every benchmark script shares: sizes, the one way to make a client or run the CLI, and
the ``name value unit`` report.

Every SDK client of the benchmarks is made by ``connect`` (or ``connect_blocking``) and every CLI
process gets its environment from ``cli_env``: the cluster's address and credentials are handled
here and nowhere else. A cluster that has an admin token (``LocalCluster.admin_token``) gets it
passed as ``token=`` (and its CA, for a TLS cluster, as ``ca=``); one without gets none, and the
user is named with ``user=`` only where the SDK still takes it (before authentication), so the
scripts work with either.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydfs.client.aio import AsyncClient
from pydfs.cluster import LocalCluster

if TYPE_CHECKING:
    from pydfs.client.sync import Client

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000  # throughput figures are in MB/s, MB = 10^6 bytes
IO_CHUNK = 1 * MiB
REPLICATION = 2
DATANODES = 2
USER = "bench"
BENCH_DIR = Path(__file__).resolve().parent

Samples = dict[str, list[float]]
"""Figure name → the values one run measured (one, or several repetitions)."""


class BenchFailure(Exception):
    """pydfs returned wrong data or misbehaved: the benchmark fails with a non-zero exit."""


def note(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- reaching the cluster ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where the name nodes are and how to authenticate to them; what a child process is
    given."""

    url: str  # every name node, comma-separated: a client sends its calls to the first
    token: str | None = None
    user: str = USER  # only for an SDK without authentication; a token names its user
    ca: str | None = None  # CA bundle of a TLS cluster


def endpoint(cluster: LocalCluster) -> Endpoint:
    """The cluster's name node URLs and, if the cluster has them, its admin bearer token and
    the CA bundle of its TLS certificates."""
    ca = getattr(cluster, "ca", None)
    urls = getattr(cluster, "urls", None) or [cluster.url]
    return Endpoint(
        ",".join(urls), getattr(cluster, "admin_token", None), ca=None if ca is None else str(ca)
    )


def spread(ep: Endpoint, k: int) -> Endpoint:
    """*ep* with its name node *k* (modulo their number) first: a client of it sends every call
    to that one, and goes on to the others only when it fails, so that clients given
    ``spread(ep, 0)``, ``spread(ep, 1)``... share the load among the name nodes."""
    urls = ep.url.split(",")
    k %= len(urls)
    return replace(ep, url=",".join(urls[k:] + urls[:k]))


def _client_options(ep: Endpoint) -> dict[str, Any]:
    options: dict[str, Any] = {"replication": REPLICATION}
    if "user" in inspect.signature(AsyncClient.__init__).parameters:
        options["user"] = ep.user
    if ep.token is not None:
        options["token"] = ep.token
    if ep.ca is not None:
        options["ca"] = ep.ca
    return options


def connect(target: LocalCluster | Endpoint, **options: Any) -> AsyncClient:
    """A new AsyncClient (its own HTTP session and connections) for the cluster."""
    ep = endpoint(target) if isinstance(target, LocalCluster) else target
    return AsyncClient(ep.url, **(_client_options(ep) | options))


def connect_blocking(target: LocalCluster | Endpoint, **options: Any) -> Client:
    """The same as ``connect``, for the blocking ``Client``."""
    from pydfs.client.sync import Client

    ep = endpoint(target) if isinstance(target, LocalCluster) else target
    return Client(ep.url, **(_client_options(ep) | options))


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cli_env(target: LocalCluster | Endpoint, home: Path) -> dict[str, str]:
    """The environment for a ``pydfs`` CLI process: a client configuration file of its own in
    *home* (``PYDFS_CONFIG``) naming the name node and the token (or, without one, the user);
    no other PYDFS_* variable leaks in from ours, so the CLI reads the file as a user's shell
    would, with byte code written, as for an installed package."""
    ep = endpoint(target) if isinstance(target, LocalCluster) else target
    home.mkdir(parents=True, exist_ok=True)
    config = home / "client.toml"
    lines = ["[client]", f"namenode = {_toml_str(ep.url)}"]
    if ep.token is not None:
        lines.append(f"token = {_toml_str(ep.token)}")
    else:
        lines.append(f"user = {_toml_str(ep.user)}")
    if ep.ca is not None:
        lines.append(f"ca = {_toml_str(ep.ca)}")
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    # An installed pydfs has its byte code compiled (pip does it): a CLI figure that compiled
    # the package's source on every run would measure the compiler, not the command.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYDFS_CONFIG"] = str(config)
    return env


# --- figures -------------------------------------------------------------------------------


def summarize(values: list[float], unit: str) -> dict[str, Any]:
    return {
        "unit": unit,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def percentile(values: list[float], pct: float) -> float:
    """The *pct* percentile of *values* (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt(value: float, unit: str) -> str:
    digits = {"ratio": 3, "s": 3, "ms": 2}.get(unit, 1)
    return f"{value:.{digits}f}"


def print_figure(name: str, fig: dict[str, Any]) -> None:
    """Three lines: ``name median unit``, ``name_min ...``, ``name_max ...``."""
    unit = fig["unit"]
    for suffix, key in (("", "median"), ("_min", "min"), ("_max", "max")):
        print(f"{name}{suffix} {fmt(fig[key], unit)} {unit}")


# --- clean exits ---------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM, raised wherever the program is, inside the event loop too.

    asyncio's own Ctrl-C handling only cancels the task that runs, and a run then goes on if
    anything below swallows that cancellation; raised from the handler, the interruption
    reaches ``run_guarded``'s clean-up in any case."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def on_signal(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise ``Interrupted``."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def run_guarded(
    work: Path,
    clusters: Sequence[LocalCluster],
    body: Callable[[], dict[str, Any]],
    json_path: str,
    started: float,
) -> int:
    """Run *body* (which starts the *clusters*) and write the figures it returns to
    *json_path*; whatever happens, stop the clusters and delete *work*, and the files of a
    cluster's own PostgreSQL (which, as root, may live outside *work*: see
    ``pydfs.local_postgres``). Exit status: 0; 1 when pydfs misbehaved (``BenchFailure``);
    128 + the signal when interrupted. *started*: the ``perf_counter()`` the script's total
    time counts from."""
    failed = True
    try:
        data = body()
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(data, indent=2) + "\n")
        note(f"results written to {json_path}; total {time.perf_counter() - started:.0f}s")
        failed = False
        return 0
    except BenchFailure as exc:
        note(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt as exc:
        failed = False
        note("interrupted; stopping the cluster and deleting its data")
        return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
    finally:
        for cluster in clusters:
            if failed:
                print_log_tails(cluster.root)
            cluster.stop()
            if cluster.postgres is not None:
                shutil.rmtree(cluster.postgres.dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def print_log_tails(root: Path, lines: int = 15) -> None:
    for log in sorted(root.glob("*.log")):
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        note(f"--- last lines of {log.name} ---")
        for line in tail:
            print(f"    {line}", file=sys.stderr)
