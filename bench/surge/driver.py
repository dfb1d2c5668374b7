"""A small keep-alive HTTP/1.1 load driver on asyncio: N connections share one list of distinct raw requests, each
sent once; every request's latency, status and body are kept (wrk's pool.lua cannot stop when a pool is spent
without sending extra requests, and a surge is a fixed number of requests, not a duration)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Outcome:
    latency_ms: float
    status: int  # 0: socket error or timeout
    body: bytes


@dataclass
class DriverResult:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile(self, p: float) -> float:
        values = sorted(o.latency_ms for o in self.outcomes)
        if not values:
            return 0.0
        return round(values[min(len(values) - 1, int(len(values) * p / 100))], 1)

    @property
    def rps(self) -> float:
        return round(len(self.outcomes) / self.wall_s, 1) if self.wall_s else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _connection(
    host: str, port: int, queue: list[bytes], out: list[Outcome], timeout: float, progress: Callable[[int], None]
) -> None:
    reader = writer = None
    while queue:
        request = queue.pop()
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.write(request)
            status, body, close = await asyncio.wait_for(_read_response(reader), timeout)  # type: ignore[arg-type]
            if close:
                writer.close()
                reader = writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            status, body = 0, repr(exc).encode()
            if writer is not None:
                writer.close()
            reader = writer = None
        out.append(Outcome((time.perf_counter() - started) * 1000, status, body))
        progress(len(out))
    if writer is not None:
        writer.close()


def drive(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int,
    timeout: float = 10.0,
    on_progress: Callable[[int], None] | None = None,
) -> DriverResult:
    """Open `connections` connections at the same moment and send every request once; returns each outcome."""

    async def main() -> DriverResult:
        queue = list(reversed(requests))
        result = DriverResult()
        progress = on_progress or (lambda n: None)
        started = time.perf_counter()
        await asyncio.gather(
            *(_connection(host, port, queue, result.outcomes, timeout, progress) for _ in range(connections))
        )
        result.wall_s = time.perf_counter() - started
        return result

    return asyncio.run(main())
