# syntax=docker/dockerfile:1
#
# One image for both binaries:
#   /nodeupgrade-controller            the controller (config/manager), run as 65532
#   /usr/local/bin/nodeupgrade-runner  the upgrade pods' runner, where
#                                      pkg/upgradepod.RunnerCommand expects it
# The controller passes its own image as --runner-image (config/manager), so
# the controller and the runner it schedules are always the same build.
#
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=v0.1.0 -t ghcr.io/nodeupgrade/nodeupgrade:v0.1.0 .
#
# VERSION is linked into the controller (pkg/manager.Version), whose
# --runner-image then defaults to ghcr.io/nodeupgrade/nodeupgrade:$VERSION:
# build with the tag you push. Its default is the tag config/manager deploys
# (test/projectimage checks the two agree).

# Build on the build machine's platform and cross-compile: both binaries are
# pure Go (CGO_ENABLED=0), static, so no emulation is needed.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=v0.1.0
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY pkg/ pkg/
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w -X github.com/nodeupgrade/nodeupgrade/pkg/manager.Version=${VERSION}" -o /out/nodeupgrade-controller ./cmd/nodeupgrade-controller && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags='-s -w' -o /out/nodeupgrade-runner ./cmd/nodeupgrade-runner

# The runner needs nsenter to enter the host's namespaces and run keadm
# there. busybox-static gives it (an applet) and a shell for debugging in
# one static binary, on an empty base: the same files `make image` writes
# without docker (test/projectimage, whose test compares it with this file).
# Pin the base by digest in release builds.
FROM debian:bookworm-slim AS busybox
RUN apt-get update && \
    apt-get install -y --no-install-recommends busybox-static && \
    rm -rf /var/lib/apt/lists/*

FROM scratch
COPY --from=busybox /bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/tmp"]
RUN ["/bin/busybox", "chmod", "1777", "/tmp"]
RUN ["/bin/busybox", "ln", "-s", "/bin/busybox", "/usr/bin/nsenter"]
COPY --from=builder /out/nodeupgrade-controller /nodeupgrade-controller
COPY --from=builder /out/nodeupgrade-runner /usr/local/bin/nodeupgrade-runner
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Non-root by default, for the controller. The upgrade pods override this:
# their runner containers set runAsUser 0 in their own securityContext
# (pkg/upgradepod), as nsenter into PID 1 requires.
USER 65532:65532
ENTRYPOINT ["/nodeupgrade-controller"]
