// Package deploy holds Herald's deployment assets, checked by its tests:
// the Grafana dashboard (deploy/grafana), the Helm chart (deploy/helm/herald,
// validated by `make deploy-check` with deploy/check), and, at the
// repository's root, the Dockerfile, .dockerignore and docker-compose.yml.
package deploy
