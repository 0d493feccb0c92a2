"""Holds N idle TCP connections to HOST:PORT, and with --reopen opens a new one whenever
one is closed.

What any local account can do to the exporter: `python flood_client.py HOST PORT N
[--reopen]`. It prints "holding N" once N connections are open, and "closed K" every
second (how many the server has closed), until stdin closes.
"""

from __future__ import annotations

import os
import resource
import selectors
import socket
import sys
import threading
import time


def main(host: str, port: int, count: int, reopen: bool) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    selector = selectors.DefaultSelector()  # epoll: descriptors above 1024 are fine
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))  # completes in the kernel's backlog, accepted or not
        selector.register(sock, selectors.EVENT_READ)

    for _ in range(count):
        open_one()
    print(f"holding {count}", flush=True)
    closed, last_report = 0, time.monotonic()
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            try:
                alive = sock.recv(1) != b""
            except (BlockingIOError, InterruptedError):
                alive = True
            except OSError:
                alive = False
            if not alive:
                selector.unregister(sock)
                sock.close()
                closed += 1
                if reopen:
                    open_one()
        if time.monotonic() - last_report >= 1:
            print(f"closed {closed}", flush=True)
            last_report = time.monotonic()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), "--reopen" in sys.argv[4:])
