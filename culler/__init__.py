"""dlcourse-gpu-culler: shuts down kernels that hold GPU memory idle, after a warning.

A hub service the hub starts only when the lecturer turned it on (``tljh-config set
dlcourse.gpu_idle_cull true``, or ``dlcourse-install --gpu-idle-cull``). Every cycle it asks
the exporter which kernels hold GPU memory at 0 % (``/api/idle``), judges each with the
thresholds of ``dlcourse_installer.hub.gpu_idle`` (the same the students' page shows), and shuts
a due kernel down through its owner's own server API, as the notebook's "Shut Down Kernel"
does: the memory is freed, the notebook is kept. It logs each shutdown and reports it to the
exporter, which counts ``dlcourse_user_gpu_idle_culls_total``.

It never touches a kernel the exporter does not call idle, nor a student's process outside a
kernel (the exporter reports those; only a kernel can be shut down cleanly).
"""
