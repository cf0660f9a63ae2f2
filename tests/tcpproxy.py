"""A minimal TCP load balancer for the HA tests: what HAProxy in `mode tcp` or a virtual IP does for them.

Each new client connection goes to the next backend in turn; a backend that refuses the connection (a dead
node) is skipped for the next one. Bytes are copied both ways unchanged; a connection ends when either side
closes. `freeze()` stops the bytes without closing anything (a network partition: a peer that neither answers
nor hangs up) until `thaw()`. It runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools


class TcpProxy:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections: dict[int, int] = dict.fromkeys(backends, 0)  # backend port -> connections given
        self._flowing = asyncio.Event()
        self._flowing.set()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            port = self.backends[next(self._turn) % len(self.backends)]
            try:
                streams = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.connections[port] += 1
            return streams
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    await self._flowing.wait()
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(OSError):
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
