# The operator image for users with Docker: the same content as `make image`
# (hack/images.py), which needs neither Docker nor a registry.
#   docker build -t ghcr.io/egpu/egpu-operator:0.1.0 .
# The tag is the package version, which is also the chart's appVersion.
FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends mmdebstrap python3 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
# Debian's python3.11 extracted from its packages (the version pinned in
# hack/versions.env), the project's wheel and its pinned dependencies on top.
RUN PIP_BREAK_SYSTEM_PACKAGES=1 EGPU_CACHE=/cache \
    python3 /src/hack/images.py export operator /rootfs

FROM scratch
COPY --from=build /rootfs /
ENV PATH=/usr/local/bin:/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080 8081
ENTRYPOINT ["/usr/bin/python3.11", "-m", "egpu.controllers.main"]
