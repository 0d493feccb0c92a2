# The dlcourse exporter. docker-compose.yml runs it with the host's PID namespace and the GPUs
# (NVIDIA Container Toolkit supplies libnvidia-ml.so.1 at run time).
FROM python:3.12.10-slim-bookworm

# Every dependency ships wheels: no compiler, no apt.
WORKDIR /src
# README.md* : the glob keeps the build working while the file is absent.
COPY pyproject.toml README.md* ./
# `pip install .` builds dlcourse's one wheel, and setuptools needs the folder of every package
# pyproject.toml lists, though the image runs only the exporter (and dlcourse_secretfile, which
# reads its token files). tests/grafana/test_grafana_compose.py checks the list.
COPY exporter ./exporter
COPY secretfile ./secretfile
COPY installer ./installer
COPY status ./status
COPY culler ./culler
COPY labextension ./labextension
COPY prometheus ./prometheus
COPY grafana ./grafana
COPY fakenvml ./fakenvml
RUN pip install --no-cache-dir --disable-pip-version-check . \
    && rm -rf /src
WORKDIR /

# Root inside the container: reading other users' /proc/<pid>/environ and NVML's process list
# of the whole host needs it. The container is read-only (compose) and has no other privilege.
EXPOSE 9945
ENTRYPOINT ["dlcourse-exporter"]
# 0.0.0.0, not the exporter's default 127.0.0.1: in its own network namespace the container's
# loopback is unreachable from the host, so the published port would lead nowhere.
# docker-compose.yml publishes the port on the host's 127.0.0.1 only, which keeps the
# localhost-only default for the outside world.
CMD ["--web.listen-address=0.0.0.0:9945"]
