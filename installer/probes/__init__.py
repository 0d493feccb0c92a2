"""What runs as a student, in the students' environment's own Python: the standard library
and, where present, that environment's own tools (user_env_probe.py)."""
