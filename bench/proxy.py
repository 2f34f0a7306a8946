#!/usr/bin/env python3
"""A TCP delay line on loopback: every chunk read from one side is written to the other side
DELAY seconds after it arrived, in order, without waiting for earlier chunks to be written
first (so throughput is not limited: it is a delay line, not stop-and-wait). The same delay
applies in both directions, so RTT = 2 * DELAY.

    proxy.py --delay-ms 25 LISTEN_PORT:TARGET_PORT [LISTEN_PORT:TARGET_PORT ...]

Listens on 127.0.0.1:LISTEN_PORT and connects each accepted client to 127.0.0.1:TARGET_PORT.
Prints "ready" on stdout once every listener is bound. Runs until killed.
"""
import argparse
import asyncio
import socket
import sys

CHUNK = 256 * 1024


async def pump(reader, writer, delay):
    """Reads chunks as fast as they come, schedules each for arrival + delay, writes in order."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((loop.time() + delay, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                # Drain only when the kernel buffer is full; this never delays later chunks'
                # schedule, which was fixed when they were read.
                await writer.drain()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(read_side(), write_side())


async def handle(client_reader, client_writer, target_port, delay):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    for w in (client_writer, up_writer):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(
            pump(client_reader, up_writer, delay), pump(up_reader, client_writer, delay)
        )
    finally:
        for w in (client_writer, up_writer):
            w.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay (RTT/2)")
    ap.add_argument("pairs", nargs="+", metavar="LISTEN:TARGET")
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    servers = []
    for pair in args.pairs:
        listen, target = (int(p) for p in pair.split(":"))

        def cb(r, w, target=target):
            return handle(r, w, target, delay)

        servers.append(await asyncio.start_server(cb, "127.0.0.1", listen, reuse_address=True))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
