"""Test support: the real components the tests, the demo and the benchmark run.

- ``hub``: a real JupyterHub (``LiveHub``) with users, servers and kernels;
- ``alerting``: real Prometheus and Alertmanager with the shipped configuration;
- ``exporter``: ``dlcourse-exporter`` as a subprocess (``RunningExporter``) and scrape helpers;
  ``exporter_run``: the same by URL, labels matched exactly;
- ``hostile_hub``: an HTTP server that answers as a broken or lying hub would;
- ``rendered``: the installer's files as ``dlcourse-install render`` writes them, and
  ``units``: systemd units as systemd reads them, their daemons run as they say;
- ``ports``: a port below 1024, a program started while its port is taken;
- ``procfs``: a /proc fixture tree, for what a real /proc cannot be made to show;
- ``students``: processes run as a student, from the students' own environment, so the
  suite runs from a checkout no other account can enter.

Only the GPU is simulated (``fakenvml``). A distribution of its own (``testing/pyproject.toml``),
which ``make setup`` installs into the development venv beside the product, so everything
there imports it by name; the product's wheel, which goes onto servers, leaves it out.
"""
