#!/usr/bin/env python3
"""A minimal SMTP sink for the benchmark (standard library only): accepts every message, counts
them, prints nothing. Usage: smtp_sink.py PORT."""
import asyncio
import sys


async def session(reader, writer):
    writer.write(b"220 sink\r\n")
    in_data = False
    while True:
        line = await reader.readline()
        if not line:
            break
        if in_data:
            if line in (b".\r\n", b".\n"):
                in_data = False
                writer.write(b"250 queued\r\n")
            continue
        cmd = line[:4].upper()
        if cmd == b"DATA":
            in_data = True
            writer.write(b"354 go ahead\r\n")
        elif cmd == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()
    writer.close()


async def main(port):
    server = await asyncio.start_server(session, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main(int(sys.argv[1])))
