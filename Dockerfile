# floatsrv container image. Build and run: docs/install.md ("In Docker").
#
#   docker build -t floatsrv .
#   docker build -t floatsrv --build-arg VENDOR_KEYS="$(cat vendor.pub)" .    # a vendor build (license-files.md)
#   docker run -d --name floatsrv -p 8080:8080 -v floatsrv-data:/var/lib/floatsrv \
#       -v /srv/floatsrv/config.yaml:/etc/floatsrv/config.yaml:ro --stop-timeout 60 floatsrv
#   docker run -d --name floatsrv-demo -e FLOATSRV_DEMO=1 floatsrv     # the demo, on the container's loopback
#
# Both stages must use the same base image: the virtualenv copied from the first one links to its Python.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: floatsrv and its dependencies (pinned by constraints.txt) in a virtualenv without pip ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv --without-pip /opt/floatsrv
WORKDIR /src
# Dependencies first, in their own layer: editing floatsrv does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > requirements.txt \
 && pip --python /opt/floatsrv/bin/python install -r requirements.txt -c constraints.txt
COPY README.md dev.py ./
COPY floatsrv ./floatsrv
# A vendor build: the vendor's public keys (base64, space-separated) become the only keys it trusts.
ARG VENDOR_KEYS=""
# ... and, only if the vendor wants it, inline (unsigned) licenses in the YAML stay allowed.
ARG ALLOW_INLINE_LICENSES=""
RUN if [ -n "$VENDOR_KEYS" ]; then \
        python dev.py trust --package floatsrv $(for key in $VENDOR_KEYS; do printf -- '--vendor-key %s ' "$key"; done) \
            ${ALLOW_INLINE_LICENSES:+--allow-inline-licenses}; \
    fi \
 && pip --python /opt/floatsrv/bin/python install --no-deps .
# No config in the image: the customer mounts one at /etc/floatsrv/config.yaml (its license files beside it,
# in /etc/floatsrv/licenses/). The demo (published passwords) is kept apart, for FLOATSRV_DEMO=1, which serves
# it on the container's loopback only (floatsrv.container). Its license file comes along in the repository
# build only (a vendor build does not trust the demo key).
COPY config.example.yaml ./
COPY licenses ./licenses
RUN mkdir -p /etc/floatsrv/licenses /usr/share/floatsrv/demo/licenses \
 && if [ -z "$VENDOR_KEYS" ]; then cp licenses/*.lic /usr/share/floatsrv/demo/licenses/; fi \
 && sed -e 's|^\(  data_dir: \)floatsrv-data|\1/var/lib/floatsrv|' \
        config.example.yaml > /usr/share/floatsrv/demo/config.yaml \
 && grep -q '^  host: 127\.0\.0\.1 ' /usr/share/floatsrv/demo/config.yaml \
 && grep -q '^  data_dir: /var/lib/floatsrv ' /usr/share/floatsrv/demo/config.yaml \
 && /opt/floatsrv/bin/floatsrv check-config --config /usr/share/floatsrv/demo/config.yaml

# --- runtime ---
FROM ${PYTHON_IMAGE}
# A fixed numeric UID/GID, so volumes and `runAsNonRoot` (Kubernetes) can rely on it.
RUN groupadd --system --gid 10001 floatsrv \
 && useradd --system --uid 10001 --gid floatsrv --home-dir /var/lib/floatsrv --no-create-home \
        --shell /usr/sbin/nologin floatsrv \
 && install -d -o floatsrv -g floatsrv -m 0700 /var/lib/floatsrv
COPY --from=build /opt/floatsrv /opt/floatsrv
COPY --from=build /etc/floatsrv /etc/floatsrv
COPY --from=build /usr/share/floatsrv /usr/share/floatsrv
# FLOATSRV_CONFIG: admin commands find the database by themselves (`docker exec floatsrv floatsrv user list`).
ENV PATH=/opt/floatsrv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLOATSRV_CONFIG=/etc/floatsrv/config.yaml
USER 10001:10001
VOLUME /var/lib/floatsrv
EXPOSE 8080
# Ready means /readyz answers 200 (the database takes writes, its schema is current): warnings such as an
# expired license do not make the container unhealthy. `floatsrv healthcheck` reads the address, port and TLS
# from the config ($FLOATSRV_CONFIG, or the demo's), so a config listening elsewhere needs no change here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["floatsrv", "healthcheck", "--timeout", "4"]
# SIGTERM: floatsrv drains requests (up to 10 s) and delivers pending usage (sync.shutdown_timeout_seconds,
# default 10 s) before it exits. Docker's default stop timeout is 10 s: run with --stop-timeout 60.
STOPSIGNAL SIGTERM
# serve --config $FLOATSRV_CONFIG --host 0.0.0.0 --data-dir /var/lib/floatsrv; without a mounted config it
# refuses to start (one line saying what to mount), unless FLOATSRV_DEMO=1 asks for the loopback-only demo.
CMD ["floatsrv", "container-start"]
