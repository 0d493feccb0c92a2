"""`make bench`: the exporter's cost, measured against node_exporter on the same machine.

``python -m bench`` (see ``bench/__main__.py``) runs, one after the other, never two at once:

- the headline scenario, 8 stand-in GPUs with 200 processes of 100 students run by real
  Linux accounts: the exporter's CPU while nobody scrapes, `/metrics` latency under
  ``wrk`` at 1 and 4 connections, resident memory; then node_exporter under the same
  ``wrk`` runs, for the ratio;
- the scaling table: 1/8/16 GPUs x 20/200/2,000 processes;
- the hub: 100/5,000/15,000 users created in a real JupyterHub 5, the exporter's poll
  beside the hub's own time to list them, and the exporter's memory with them.

Only the GPU is simulated (``fakenvml``). Results in docs/performance.md.
"""
