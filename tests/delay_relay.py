"""A TCP relay that delays one direction: what a slow link does to a worker host when the
kernel has no netem. Run inside the worker's namespace:

    python -m tests.delay_relay --listen 127.0.0.1:16380 --upstream 10.250.0.1:16379 --delay-ms 50

Bytes from the client (the worker) reach the upstream (Redis) `delay_ms` later, in order, as if
every packet the worker host sends were held that long; answers come back at once. So each
request/answer round trip costs `delay_ms` more, as with `tc ... netem delay` on B's interface.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy `reader` to `writer`, each chunk sent `delay_s` after it arrived (order kept)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay_s, chunk))
    finally:
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(OSError):
            await sender
        writer.close()


def serve(listen: tuple[str, int], upstream: tuple[str, int], delay_s: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            client_writer.close()
            return
        with contextlib.suppress(OSError):
            await asyncio.gather(
                _pump(client_reader, up_writer, delay_s), _pump(up_reader, client_writer, 0.0)
            )

    async def main() -> None:
        server = await asyncio.start_server(handle, *listen)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="delay_relay")
    parser.add_argument("--listen", type=_address, required=True)
    parser.add_argument("--upstream", type=_address, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    serve(args.listen, args.upstream, args.delay_ms / 1000)
