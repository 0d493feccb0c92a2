"""What runs inside JupyterHub's process or TLJH's hub environment, never in the installer:
the TLJH plugin (tljh_plugin.py), the GPU hook and what it reads (gpu_hook.py, gpu_load.py,
gpu_policy.py, nvidia_devices.py), the hub passwords' seeding (hub_passwords.py), and what
the students' services read (the GPU idle thresholds and their decision, gpu_idle.py, shared
by the culler and the students' page; the proxy's address for the culler, public_url.py). It
imports the standard library, what that environment has (jupyterhub, traitlets, tornado,
yaml, pluggy, bcrypt), dlcourse_secretfile, and layout/ and catalogs/ only."""
