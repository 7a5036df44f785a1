# Herald's container image. Not built or tested on the development machines
# (they have no Docker engine); see docker-compose.yml.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/herald ./cmd/herald

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /usr/local/bin/herald
USER nonroot
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["run"]
