package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The image compose builds says which Herald it is (`herald version`):
// the build context has no .git, so compose passes HERALD_VERSION and
// HERALD_COMMIT as the Dockerfile's build args.
func TestImageStampsVersion(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		cmd := exec.Command("docker-compose", "-f", "../../docker-compose.yml", "config")
		cmd.Env = append(os.Environ(), "HERALD_VERSION=v9.9.9", "HERALD_COMMIT=abc123")
		if raw, err = cmd.Output(); err != nil {
			t.Fatalf("docker-compose config: %v", err)
		}
	} else {
		raw = []byte(strings.NewReplacer("${HERALD_VERSION:-}", "v9.9.9", "${HERALD_COMMIT:-}", "abc123").Replace(string(raw)))
	}
	var c struct {
		Services map[string]struct {
			Build struct {
				Args map[string]string `yaml:"args"`
			} `yaml:"build"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ARG VERSION", "ARG COMMIT", "-X main.version=${VERSION} -X main.commit=${COMMIT}"} {
		if !strings.Contains(string(docker), want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	if args := c.Services["herald"].Build.Args; args["VERSION"] != "v9.9.9" || args["COMMIT"] != "abc123" {
		t.Errorf("compose builds herald with args %v, want VERSION and COMMIT from HERALD_VERSION and HERALD_COMMIT", args)
	}
}
