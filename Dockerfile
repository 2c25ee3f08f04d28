# syntax=docker/dockerfile:1
#
# One image for both binaries:
#   /nodeupgrade-controller            the controller (config/manager), run as 65532
#   /usr/local/bin/nodeupgrade-runner  the upgrade pods' runner, where
#                                      pkg/upgradepod.RunnerCommand expects it
# The controller passes its own image as --runner-image (config/manager), so
# the controller and the runner it schedules are always the same build.
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 --build-arg VERSION=v0.1.0 -t ghcr.io/nodeupgrade/nodeupgrade:v0.1.0 .
#
# The same platforms as `make image` (test/projectimage.Platforms; its test
# reads the line above). Only the last stage's four small RUN steps execute
# the target platform's busybox: a cross build needs QEMU user emulation
# registered with binfmt_misc for them (docker's usual multi-platform setup).
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
ARG TARGETVARIANT
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
    export GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} && \
    go build -trimpath -ldflags="-s -w -X github.com/nodeupgrade/nodeupgrade/pkg/manager.Version=${VERSION}" -o /out/nodeupgrade-controller ./cmd/nodeupgrade-controller && \
    go build -trimpath -ldflags='-s -w' -o /out/nodeupgrade-runner ./cmd/nodeupgrade-runner

# The runner needs nsenter to enter the host's namespaces and run keadm
# there. busybox-static gives it (an applet) and a shell for debugging in
# one static binary, on an empty base: the same files `make image` writes
# without docker (test/projectimage, whose test compares it with this file).
# Pin the base by digest in release builds. The target platform's .deb is
# fetched on the build platform (Debian calls ARMv7 armhf), as
# hack/kubeedge-deps.sh does for `make image`, so apt runs without emulation.
FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS busybox
ARG TARGETARCH
RUN arch=$TARGETARCH && if [ "$arch" = arm ]; then arch=armhf; fi && \
    apt-get -o APT::Architectures::=$arch update && \
    cd /tmp && apt-get -o APT::Architectures::=$arch download busybox-static:$arch && \
    dpkg-deb -x busybox-static_*_$arch.deb /out && \
    rm -rf /var/lib/apt/lists/* /tmp/*.deb

FROM scratch
COPY --from=busybox /out/bin/busybox /bin/busybox
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
