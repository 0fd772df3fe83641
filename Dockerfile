# syntax=docker/dockerfile:1
# ibex image: runonce (the entry point), scheduler and the ibex admin CLI, static, non-root.
#   docker build -t ghcr.io/ibexrepl/ibex:latest .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/ibexrepl/ibex:latest .

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/ibex ./cmd/runonce ./cmd/scheduler

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/ibexrepl/ibex" \
      org.opencontainers.image.description="ibex: multi-master PostgreSQL replication as stateless jobs"
COPY --from=build /out/ibex /out/runonce /out/scheduler /usr/local/bin/
USER 65532:65532
# The scheduler's /metrics and /healthz.
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/runonce"]
