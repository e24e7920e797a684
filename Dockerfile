# syntax=docker/dockerfile:1
# One image for every edgeunit binary: /manager (the entrypoint), /edge-hub,
# /tunnel-server, /tunnel-agent, /edge-ipam and /edgeunit-demo.
#   docker build -t ghcr.io/edgeunit/edgeunit:dev .
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

FROM gcr.io/distroless/static:nonroot
COPY --from=builder /out/ /
USER 65532:65532
ENTRYPOINT ["/manager"]
