"""What runs as a student, in the students' environment's own Python: the standard library
and, where present, that environment's own tools: the probe of what is installed
(user_env_probe.py) and the IPython extension every kernel loads, which notes CUDA
out-of-memory errors (kernel_gpu_errors.py, run by ipykernel)."""
