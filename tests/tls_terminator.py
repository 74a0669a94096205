"""A real TLS server that relays each connection to a unix socket; run as its own process.

`python tests/tls_terminator.py CERT KEY UNIX_PATH PORT COUNT_FILE`: listens on 127.0.0.1:PORT,
appends one line to COUNT_FILE per accepted TLS connection, runs until SIGTERM. A separate
process, so its sockets and event loop never leak into the test process.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(certificate: str, key: str, unix_path: str, port: int, count_file: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with count_file.open("a") as count:
            count.write("connection\n")
        up_reader, up_writer = await asyncio.open_unix_connection(unix_path)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    cert, key_file, unix, port_text, counts = sys.argv[1:6]
    asyncio.run(main(cert, key_file, unix, int(port_text), Path(counts)))
