"""Joining a Ray cluster with a clear message when it cannot be joined, before ``ray.init`` retries
for minutes: the address is probed (it resolves, it accepts a connection, it answers as a Ray
cluster's GCS), unknown ``ray.init`` arguments are named, and a Ray error is cut to its cause."""

from __future__ import annotations

import socket

from seva_plugin.errors import ConfigError, short, unknown

START_HINT = (
    "Start a cluster with `ray start --head --port=6379` on its head node (it prints the address to give, and the command that joins "
    "other nodes to it), or leave ray.address out to run a Ray of the build's own"
)
PROBE_TIMEOUT_S = 10


def check_cluster(address: str) -> None:
    """Fail at once, naming the address, when nothing that answers as a Ray cluster is there: ``ray.init``
    retries an unreachable address for minutes."""
    if address in ("auto", "local"):
        return
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        why = "the name does not resolve" if isinstance(exc, socket.gaierror) else getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"cannot reach a Ray cluster at ray.address={address!r}: {why}. {START_HINT}.") from None
    if address.startswith("ray://"):
        return  # Ray Client speaks its own protocol; ray.init says if it is not one
    try:
        import grpc  # type: ignore[import-untyped]
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:
        return
    channel = grpc.insecure_channel(where)
    try:
        gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=PROBE_TIMEOUT_S)  # type: ignore[attr-defined]
    except grpc.RpcError as exc:
        # a Ray cluster's GCS answers (an auth error is an answer); another server, or none, does not
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED):
            raise ConfigError(f"ray.address={address!r} answers, but not as a Ray cluster ({exc.code().name}). {START_HINT}.") from None
    finally:
        channel.close()


def check_init_kwargs(ray, kwargs: dict) -> None:
    """An unknown ``ray.init`` argument is a message naming it, before Ray starts."""
    import inspect

    known = {name for name in inspect.signature(ray.init).parameters if name not in ("address", "kwargs")}
    for key in kwargs:
        if key not in known and not key.startswith("_"):  # Ray's own checks cover its private `_` arguments
            raise unknown("ray.init() argument", key, known, "ray.init_kwargs")


def last_line(exc: BaseException) -> str:
    """The last line of a Ray error's text (the cause, after Ray's traceback)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return short(lines[-1] if lines else type(exc).__name__, 300)
