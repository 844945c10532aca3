"""One way to build a Redis client, and one way to talk to it: batched round trips with
bounded timeouts and no silent retries.

URLs: ``redis://host:port/db``, ``rediss://`` (TLS), ``unix:///path`` for one server, and
``redis+cluster://host:port[,host:port...]`` (or ``rediss+cluster://``) for a Redis
Cluster: the listed nodes are the start-up nodes, the client learns the rest of the
cluster from them and follows ``MOVED`` redirections.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

from ._extras import missing_extra
from ._url import REDIS_CLUSTER_SCHEMES, is_redis_url
from .metrics import DEPENDENCIES, RedisCall

try:
    import redis.asyncio as redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("redis", "a Redis replay store or introspection cache") from _exc

__all__ = ["CLUSTER_SCHEMES", "Batcher", "Client", "is_redis_url", "redis_client"]

Client: TypeAlias = "redis.Redis | RedisCluster"
Command: TypeAlias = tuple[Any, ...]

CLUSTER_SCHEMES: Final = REDIS_CLUSTER_SCHEMES


def _no_retries() -> Retry:
    # redis-py retries connection errors and timeouts three times by default (with a
    # backoff of up to seconds): a timed-out SET NX may have run, and the retries would
    # stretch a fail-closed answer far past its budget. Batcher retries itself, once, and
    # only where the command provably never reached Redis.
    return Retry(NoBackoff(), 0)


def redis_client(
    url: str, *, connect_timeout: float, command_timeout: float, **options: Any
) -> Client:
    """A ``redis.asyncio.Redis`` for ``url``, or a ``RedisCluster`` for a
    ``redis+cluster://`` URL.

    Connections open lazily, in the event loop that first uses them. Nothing is retried
    silently: the caller fails closed (or falls back) within its own budget.

    :raises ValueError: a cluster URL without a node, or with a database number (a
        cluster has only database 0).
    """
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        nodes = []
        for netloc in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = netloc.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("a redis+cluster:// URL lists host:port start-up nodes")
            nodes.append(ClusterNode(host.strip("[]"), int(port)))
        if parts.path not in ("", "/", "/0"):
            raise ValueError("a Redis Cluster has only database 0")
        return RedisCluster(
            startup_nodes=nodes,
            username=parts.username,
            password=parts.password,
            ssl=parts.scheme == "rediss+cluster",
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            retry=_no_retries(),
            **options,
        )
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        retry=_no_retries(),
        **options,
    )


class _Batch:
    __slots__ = ("commands", "reads", "waiters")

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.waiters: list[list[asyncio.Future[Any]]] = []
        self.reads: dict[Command, int] = {}


class Batcher:
    """Send the commands of one event-loop tick in one round trip.

    Every :meth:`submit` of a tick joins one batch, sent as a non-transactional pipeline
    of independent single-key commands when the loop next runs its callbacks: Redis still
    executes each command atomically and in order (two ``SET NX`` of one key in a batch:
    the first wins), and in a Redis Cluster each command goes to the node of its key.

    Failure: a batch that fails (timeout, connection error) fails every command in it; in
    a cluster, the commands on a failed node fail and the rest are answered. The whole
    round trip has one deadline, ``timeout``. One retry, on a fresh connection, and only
    where the batch provably never reached Redis (see :meth:`_standalone`).

    :param client: from :func:`redis_client`.
    :param timeout: seconds for the whole round trip (send and every reply).
    :param connect_timeout: seconds for a cluster client's first discovery of the nodes
        and slots (once, before its first round trip); default ``timeout``.
    :param name: who sends the commands (``replay``, ``introspection_cache``): the
        ``store`` of the :class:`~dpop_guard.metrics.RedisCall` each round trip reports
        to :data:`~dpop_guard.metrics.DEPENDENCIES` when anyone listens.
    """

    def __init__(
        self,
        client: Client,
        *,
        timeout: float,
        connect_timeout: float | None = None,
        name: str = "redis",
    ) -> None:
        self.client = client
        self.name = name
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.cluster = isinstance(client, RedisCluster)
        self._discovered = False
        self._batch: _Batch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0  # pipelines sent (for benchmarks and sizing)
        # Bumped whenever a connection may have been (re)made: a failed batch (the next
        # one opens a new connection) or a connection found closed by the server. A user
        # that must re-establish something per connection compares it with the value it
        # last saw.
        self.generation = 0

    def submit(self, command: Command, *, shared: bool = False) -> asyncio.Future[Any]:
        """The reply to ``command`` (an exception instance if it failed).

        :param shared: a read whose reply every submitter of this tick may share: sent
            once per batch (the epoch marker).
        """
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        if shared and (index := batch.reads.get(command)) is not None:
            batch.waiters[index].append(future)
            return future
        if shared:
            batch.reads[command] = len(batch.commands)
        batch.commands.append(command)
        batch.waiters.append([future])
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:  # pragma: no cover - one flush per batch
            return
        task = asyncio.get_running_loop().create_task(self._run(batch))
        # The loop keeps only weak references to tasks.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch) -> None:
        try:
            replies = await self.execute(batch.commands)
        except BaseException as exc:
            # Fail every request of the batch closed, whatever went wrong.
            self.generation += 1
            failure: Exception
            if isinstance(exc, TimeoutError):  # asyncio.timeout's: the round trip's budget
                failure = RedisTimeoutError(f"no answer within {self.timeout} s")
            elif isinstance(exc, Exception):
                failure = exc
            else:
                failure = RedisConnectionError("cancelled")
            for waiters in batch.waiters:
                for future in waiters:
                    if not future.done():
                        future.set_exception(failure)
                        future.exception()  # retrieved by its caller, or by nobody
            if not isinstance(exc, Exception):
                raise
            return
        for waiters, reply in zip(batch.waiters, replies, strict=True):
            for future in waiters:
                if not future.done():
                    future.set_result(reply)

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """One unbatched round trip (for rare commands); replies may be exceptions."""
        if not DEPENDENCIES.listening:
            if self.cluster:
                return await self._cluster(commands)
            return await self._standalone(commands)
        started = time.perf_counter()
        operation = "+".join(sorted({str(c[0]).upper() for c in commands}))
        try:
            if self.cluster:
                replies = await self._cluster(commands)
            else:
                replies = await self._standalone(commands)
        except Exception as exc:
            seconds = time.perf_counter() - started
            DEPENDENCIES.emit(RedisCall(self.name, operation, seconds, _error_kind(exc)))
            raise
        seconds = time.perf_counter() - started
        refused = sum(isinstance(reply, Exception) for reply in replies)
        DEPENDENCIES.emit(RedisCall(self.name, operation, seconds, reply_errors=refused))
        return replies

    async def _cluster(self, commands: Sequence[Command]) -> list[Any]:
        # The cluster pipeline groups the commands by node and sends each group in one
        # round trip, all groups at once; a failed node's commands get its exception.
        assert isinstance(self.client, RedisCluster)
        if not self._discovered:
            # CLUSTER SLOTS and a connection to every node: set-up, not the command's
            # budget (and done once; redis-py serialises concurrent first uses).
            async with asyncio.timeout(self.connect_timeout + self.timeout):
                await self.client.initialize()
            self._discovered = True
        self.round_trips += 1  # one per node the commands live on, sent at once
        async with asyncio.timeout(self.timeout):
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def _standalone(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` on one pooled connection and read every reply.

        Retried once, on a new connection, only when the pooled connection was found
        closed by the server before the batch was sent (a restart closes every pooled
        connection, and the pool hands them out once each): nothing of the batch reached
        Redis. A timeout, or any error once the batch is on the wire, is not retried: the
        commands may have run.
        """
        assert isinstance(self.client, redis.Redis)
        self.round_trips += 1
        pool = self.client.connection_pool
        async with asyncio.timeout(self.timeout):
            connection = await pool.get_connection(*_POOL_ARGS)  # type: ignore[no-untyped-call]
            try:
                if _closed_by_server(connection):
                    # A fresh socket, before a byte of the batch was written.
                    self.generation += 1
                    await connection.disconnect()
                    await connection.connect()
                await connection.send_packed_command(
                    connection.pack_commands(commands), check_health=False
                )
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await connection.read_response(timeout=self.timeout))
                    except redis.ResponseError as exc:
                        replies.append(exc)
                return replies
            except BaseException:
                await connection.disconnect()
                raise
            finally:
                await pool.release(connection)


def _error_kind(exc: Exception) -> Literal["timeout", "connection", "error"]:
    """What failed a round trip, for its metric."""
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | OSError):
        return "connection"
    return "error"


def _pool_args() -> tuple[str, ...]:
    # redis-py before 5.3 requires a command name (unused for a plain pool); later
    # versions deprecate passing one.
    parameter = inspect.signature(redis.ConnectionPool.get_connection).parameters.get(
        "command_name"
    )
    required = parameter is not None and parameter.default is inspect.Parameter.empty
    return ("PIPELINE",) if required else ()


_POOL_ARGS: Final = _pool_args()


def _closed_by_server(connection: Any) -> bool:
    """Whether the server has closed ``connection`` (its end-of-stream already arrived).

    A server that closes a connection reads nothing more from it, so a batch not yet sent
    on it can be sent on a new one without running twice.
    """
    reader = getattr(connection, "_reader", None)
    if reader is None:
        return False
    # End of stream (FIN), or the connection already lost with an error (RST).
    return bool(reader.at_eof() or reader.exception() is not None)
