# Herald's container image. The development machines have no Docker
# engine: the image is not built there. What it runs is tested instead:
# cmd/herald's TestEntrypointUnprivileged starts the binary as an
# unprivileged user on an empty data dir, as this image does.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/herald ./cmd/herald \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /usr/local/bin/herald
# /data exists in the image and belongs to nonroot (65532), so a named
# volume mounted there starts out owned by Herald's user, not root.
COPY --from=build --chown=65532:65532 /out/data /data
ENV HERALD_DATA_DIR=/data \
    HERALD_HTTP_ADDR=0.0.0.0:8080
USER 65532:65532
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["/usr/local/bin/herald", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["run"]
