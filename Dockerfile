# weft's container image: weftd, weft-controller, the weft CNI plugin and the reference
# portmap, bandwidth and loopback plugins, nft, iproute2's ip and busybox. One image;
# each container of the Helm chart (charts/weft) names its program, weftd is the default.
#
#   docker build -t weft.dev/weft:0.1.0 .
#
# NOT EXERCISED HERE: weft's development machines and CI reach no container registry,
# so the base images below (rust, golang, debian) cannot be pulled and this file has
# never been built by the tests. The tests build the same runtime stage without a
# registry: e2e/image/build.sh (prebuilt binaries, this machine's Debian files, umoci)
# runs the very script this file's runtime stage runs, e2e/image/rootfs.sh, which is
# the one definition of what the image holds; e2e/image/verify.sh runs every program
# inside the result.

# Pins: Rust as rustup has it on the test machines, Go as /usr/local/go, the reference
# plugins as e2e/setup.sh builds them, Debian 12 as the test machines run it.
ARG RUST_VERSION=1.95.0
ARG GO_VERSION=1.26.8
ARG PLUGINS_VERSION=v1.9.1
ARG DEBIAN_RELEASE=bookworm

# ---- weft: cargo build --release --locked ------------------------------------------
# The plugin is linked statically (as e2e/bench-cni.sh builds it): it runs on each node,
# beside whatever libc the node has. weftd and weft-controller run in the image.
FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS rust
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins -p weftd -p weft-controller && \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked -p weft-cni --target x86_64-unknown-linux-gnu && \
    install -D -m 0755 -t /out target/release/weftd target/release/weft-controller \
      target/x86_64-unknown-linux-gnu/release/weft

# ---- the reference plugins, from their Go module; the chart's uninstall waiter --------
FROM docker.io/library/golang:${GO_VERSION}-${DEBIAN_RELEASE} AS go
ARG PLUGINS_VERSION
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
RUN GOBIN=/out go install -trimpath \
      -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=${PLUGINS_VERSION}" \
      github.com/containernetworking/plugins/plugins/meta/portmap@${PLUGINS_VERSION} \
      github.com/containernetworking/plugins/plugins/meta/bandwidth@${PLUGINS_VERSION} \
      github.com/containernetworking/plugins/plugins/main/loopback@${PLUGINS_VERSION}
COPY e2e/image/daemonset-wait /src/daemonset-wait
RUN cd /src/daemonset-wait && go build -trimpath -ldflags "-s -w" -o /out/daemonset-wait .

# ---- the root filesystem: e2e/image/rootfs.sh over Debian's nftables, iproute2, busybox
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS rootfs
RUN apt-get update && \
    apt-get install -y --no-install-recommends nftables iproute2 busybox-static && \
    rm -rf /var/lib/apt/lists/*
COPY --from=rust /out/ /staging/weft/
COPY --from=go /out/ /staging/go/
COPY e2e/image/rootfs.sh /usr/local/bin/weft-rootfs
RUN weft-rootfs /rootfs /staging/weft /staging/go

# ---- the runtime image ---------------------------------------------------------------
FROM scratch
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/sbin:/usr/bin
ENTRYPOINT ["/usr/bin/weftd"]
