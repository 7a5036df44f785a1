// Package deploy holds Herald's deployment assets, checked by its tests:
// the Grafana dashboard (deploy/grafana), and, at the repository's root,
// the Dockerfile, .dockerignore and docker-compose.yml.
package deploy
