"""Where everything is on the server: every path (paths.py) and every listen port (ports.py),
each from one place. Standard library only: every folder uses them, hub/ included."""
