"""A fast webhook receiver on loopback for the webhook benchmark: answers 204 at once and notes, for every POST,
its ``webhook-id`` and the moment it arrived (``time.time()``, the clock ``Event.created_at`` is read from).

One asyncio process, so that it never is the bottleneck of what it measures; it keeps connections alive, as the web
servers merchants run do. ``GET /count`` answers how many deliveries arrived; ``GET /dump`` the list of
``[webhook-id, arrival]``.

    python -m benchmarks.receiver --port 8123
"""

import argparse
import asyncio
import json
import time

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"

received: list[tuple[str, float]] = []


def _answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # HTTP/1.1 keep-alive, as any web server a merchant would run: requests follow each other on one connection
    # until the client closes it (or says "Connection: close").
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = time.time()
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if length:
                await reader.readexactly(length)
            method, path, _ = request_line.split(" ", 2)
            if method == "GET" and path == "/count":
                writer.write(_answer(str(len(received)).encode()))
            elif method == "GET" and path == "/dump":
                writer.write(_answer(json.dumps(received).encode()))
            else:
                received.append((headers.get("webhook-id", ""), arrived))
                writer.write(NO_CONTENT)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
