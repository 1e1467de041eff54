# Stand-in for rust:1.89-bookworm: the host's toolchain (build context = its sysroot, with the
# host's CA certificates under ca/) on the stand-in Debian.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain/ /usr/local/rust/
ENV PATH=/usr/local/rust/bin:$PATH CARGO_HOME=/usr/local/cargo
