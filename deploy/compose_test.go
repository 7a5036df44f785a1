package deploy

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]struct {
		Restart     string            `yaml:"restart"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// compose reads docker-compose.yml as docker-compose resolves it, when the
// tool is installed (it validates the file against the Compose schema
// without an engine), and as plain YAML otherwise.
func compose(t *testing.T) composeFile {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		cmd := exec.Command("docker-compose", "-f", "../docker-compose.yml", "config")
		cmd.Env = append(os.Environ(), "HERALD_API_TOKEN=", "HERALD_PUBLISH=", "KAFKA_PUBLISH=", "POSTGRES_PUBLISH=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker-compose config: %v\n%s", err, out)
		}
		raw = out
	} else {
		t.Log("docker-compose not installed: parsing the file as YAML only")
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestComposeFile(t *testing.T) {
	c := compose(t)
	kafka, herald := c.Services["kafka"], c.Services["herald"]
	// Kafka's log is on its volume.
	logDir := kafka.Environment["KAFKA_LOG_DIRS"]
	if logDir == "" || !hasVolumeAt(kafka.Volumes, logDir) {
		t.Errorf("KAFKA_LOG_DIRS %q is not a volume of kafka %v", logDir, kafka.Volumes)
	}
	// Herald's data dir is its volume.
	if d := herald.Environment["HERALD_DATA_DIR"]; !hasVolumeAt(herald.Volumes, d) {
		t.Errorf("HERALD_DATA_DIR %q is not a volume of herald %v", d, herald.Volumes)
	}
	for name, s := range c.Services {
		if s.Restart != "unless-stopped" && s.Restart != "always" {
			t.Errorf("%s: restart %q", name, s.Restart)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback by default", name, p)
			}
		}
	}
	if hc := strings.Join(herald.Healthcheck.Test, " "); !strings.Contains(hc, "herald healthcheck") && hc != "CMD /usr/local/bin/herald healthcheck" {
		t.Errorf("herald healthcheck %q", hc)
	}
	if tok := herald.Environment["HERALD_API_TOKEN"]; tok != "" {
		t.Errorf("a fixed API token %q in the compose file", tok)
	}
}

func hasVolumeAt(vols []string, path string) bool {
	for _, v := range vols {
		if _, target, ok := strings.Cut(v, ":"); ok && strings.TrimSuffix(strings.Split(target, ":")[0], "/") == strings.TrimSuffix(path, "/") {
			return true
		}
	}
	return false
}

func TestDockerfileAndIgnore(t *testing.T) {
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--chown=65532:65532 /out/data /data", "USER 65532:65532", "HERALD_DATA_DIR=/data", `"/usr/local/bin/herald", "healthcheck"`} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	ig, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"data/", "bin/", ".git"} {
		if !strings.Contains(string(ig), "\n"+want+"\n") && !strings.HasPrefix(string(ig), want+"\n") {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
