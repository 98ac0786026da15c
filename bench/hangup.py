#!/usr/bin/env python3
"""The hang-up flood: CLIENTS threads each send a login and close the socket at once, for SECONDS.

A service that released its hashing slot when the request was dropped stacked one 19 MiB argon2 hash
per hang-up; the bench records peak RSS and /health/live latency while this runs.
Usage: hangup.py HOST PORT CLIENTS SECONDS; prints the number of hang-ups sent.
"""
import socket
import sys
import threading
import time

host, port, clients, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
body = b'{"email":"nobody@bench.example","password":"wrong password here"}'
request = (
    b"POST /api/v1/public/users/login HTTP/1.1\r\nHost: bench\r\ncontent-type: application/json\r\n"
    + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
)
until = time.monotonic() + seconds
sent = [0] * clients


def flood(i):
    while time.monotonic() < until:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(request)
            sent[i] += 1
        except OSError:
            time.sleep(0.01)


threads = [threading.Thread(target=flood, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sum(sent))
