"""Runs as a student's Linux account, like a Jupyter server: starts and stops real kernels.

Not imported: ``dlcourse_testing.kernels.KernelDriver`` runs this file's text with the
students' environment's Python. Reads one command per line on stdin and answers one JSON
line on stdout: ``start`` -> {"id", "pid", "connection_file"}; ``shutdown ID``; ``restart
ID`` -> {"pid"}; ``run ID WAIT CODE`` (CODE a JSON string) runs code in the kernel as a
notebook cell, and with WAIT 1 answers {"status"} when the cell is done, with WAIT 0 as
soon as the kernel has taken it (a cell that kills the kernel has no reply); ``quit``.
Kernels use jupyter_server's file naming: <runtime dir>/kernel-<id>.json.
"""

import json
import os
import queue
import sys
import time
import uuid

from jupyter_client import KernelManager
from jupyter_core.paths import jupyter_runtime_dir


def run(km: KernelManager, code: str, wait: bool) -> dict:
    client = km.client()
    client.start_channels()
    try:
        # Answers on every channel, iopub included: a subscription made just now would miss
        # what the kernel publishes before it is connected.
        client.wait_for_ready(timeout=60)
        if wait:
            reply = client.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
            return {"status": reply["content"]["status"]}
        msg_id = client.execute(code)
        # The kernel has the cell once it announces it, or once it is dead: a cell that
        # kills it at once may take the announcement with it (zmq had not sent it yet).
        deadline = time.monotonic() + 60
        while km.is_alive() and time.monotonic() < deadline:
            try:
                msg = client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
                break
        return {}
    finally:
        client.stop_channels()


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
            reply = {
                "id": kernel_id,
                "pid": km.provisioner.process.pid,
                "connection_file": km.connection_file,
            }
        elif command == "shutdown":
            kernels.pop(arg).shutdown_kernel()
        elif command == "restart":
            kernels[arg].restart_kernel()
            reply = {"pid": kernels[arg].provisioner.process.pid}
        elif command == "run":
            kernel_id, wait, code = arg.split(" ", 2)
            reply = run(kernels[kernel_id], json.loads(code), wait == "1")
        elif command == "quit":
            for km in kernels.values():
                km.shutdown_kernel(now=True)
            break
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
