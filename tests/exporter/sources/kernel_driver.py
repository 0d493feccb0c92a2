"""Runs as a student's Linux account, like a Jupyter server: starts and stops real kernels.

Reads one command per line on stdin and answers one JSON line on stdout:
``start`` -> {"id", "pid"}; ``shutdown ID``; ``restart ID`` -> {"pid"}; ``quit``.
Kernels use jupyter_server's file naming: <runtime dir>/kernel-<id>.json.
"""

import json
import os
import sys
import uuid

from jupyter_client import KernelManager
from jupyter_core.paths import jupyter_runtime_dir


def main() -> None:
    kernels: dict[str, KernelManager] = {}
    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, exist_ok=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        reply: dict = {}
        if command == "start":
            kernel_id = str(uuid.uuid4())
            km = KernelManager(connection_file=os.path.join(runtime, f"kernel-{kernel_id}.json"))
            km.start_kernel()
            client = km.client()
            client.start_channels()
            client.wait_for_ready(timeout=60)  # a kernel not yet up would ignore a shutdown
            client.stop_channels()
            kernels[kernel_id] = km
            reply = {"id": kernel_id, "pid": km.provisioner.process.pid}
        elif command == "shutdown":
            kernels.pop(arg).shutdown_kernel()
        elif command == "restart":
            kernels[arg].restart_kernel()
            reply = {"pid": kernels[arg].provisioner.process.pid}
        elif command == "quit":
            for km in kernels.values():
                km.shutdown_kernel(now=True)
            break
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
