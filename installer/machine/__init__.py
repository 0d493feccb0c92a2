"""The one door to the host (host.py: ``query`` looks, ``run`` changes, files under a root)
and the one-verb wrappers over it: apt, systemd, users, files, downloads, TLJH's tools, the
students' environment, the NVIDIA hardware and driver, installed releases; commands stream
through streaming.py, progress.py is the live line. It knows nothing of the checklist, the
generated files or the options."""
