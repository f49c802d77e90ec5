"""Connecting to a Ray cluster: one clear line when ``ray`` is missing or the cluster is not there."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pipeline.errors import LongqaError, import_extra

log = logging.getLogger(__name__)

# Passed to every worker: the workers run in the processes Ray started, not under our environment.
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "TRANSFORMERS_VERBOSITY",
    "LONGQA_LOG",
)
CONNECT_TIMEOUT_S = 5.0
ADDRESS_HELP = (
    "give --ray the head node's address as HOST:PORT (what 'ray start --head' printed), 'auto' on a "
    "node of the cluster, or ray://HOST:10001 for Ray Client"
)


class ClusterError(LongqaError, ConnectionError):
    """The Ray cluster cannot be used: not reachable, or no CPU for a worker."""


@dataclass(frozen=True)
class RayOptions:
    """Where the cluster is and how many workers to start on it (None: one per CPU it has)."""

    address: str
    workers: int | None = None
    cpus_per_worker: float = 1.0


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a GCS address 'HOST:PORT'; None for 'auto' and ray:// addresses."""
    if address == "auto" or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"'{address}' is not a Ray cluster address", ADDRESS_HELP)
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when nothing listens at a HOST:PORT address (Ray itself would
    retry for a minute and print a traceback)."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({why})",
            "start it there with 'ray start --head --port PORT', or " + ADDRESS_HELP,
        ) from exc


def connect(address: str) -> ModuleType:
    """The ``ray`` module, connected to the cluster at ``address`` (a connection that is already
    open is reused). Raises MissingExtra without ``ray``, ClusterError when it cannot connect."""
    ray: Any = import_extra("ray", "ray", "--ray (ingest and batch on a Ray cluster)")
    if ray.is_initialized():
        return ray
    check_reachable(address)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    try:
        ray.init(
            address=address,
            log_to_driver=False,  # workers report through their results, not their stderr
            logging_level=logging.WARNING,
            runtime_env={"env_vars": env} if env else None,
            namespace="longqa",
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {first}", ADDRESS_HELP) from exc
    return ray


def worker_count(ray: Any, opts: RayOptions) -> int:
    """How many workers to start: ``opts.workers``, or as many as the cluster's CPUs hold."""
    if opts.workers is not None:
        if opts.workers < 1:
            raise ClusterError(f"--ray-workers must be at least 1, not {opts.workers}")
        return opts.workers
    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    n = int(cpus // opts.cpus_per_worker)
    if n < 1:
        raise ClusterError(
            f"the Ray cluster at {opts.address} has {cpus:g} CPUs, fewer than one worker needs "
            f"({opts.cpus_per_worker:g})",
            "start its nodes with --num-cpus, or add nodes",
        )
    return n


def disconnect(ray: Any) -> None:
    if ray.is_initialized():
        ray.shutdown()
