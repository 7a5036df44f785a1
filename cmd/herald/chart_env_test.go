package main

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/herald-dispatch/herald/internal/cli"
)

const chartDir = "../../deploy/helm/herald"

// runEnvNames lists the variables `herald run` reads, from its flags
// registered as runPipeline registers them (the shared flags, then every
// stage's), plus --config's and DATABASE_URL.
func runEnvNames() map[string]bool {
	fs := flag.NewFlagSet("herald run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	new(runFlags).register(fs, "all")
	names := map[string]bool{cli.EnvName("config"): true, "DATABASE_URL": true, cli.EnvPrefix + "_DATABASE_URL": true}
	fs.VisitAll(func(f *flag.Flag) { names[cli.EnvName(f.Name)] = true })
	return names
}

var envRef = regexp.MustCompile(`\b(HERALD_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL)\b`)

// chartEnvNames lists the variables the chart names: every HERALD_* and
// DATABASE_URL in its templates and values files, and HERALD_<KEY> for each
// key of a values file's config map (the template turns those into
// variables).
func chartEnvNames(t *testing.T, dir string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	var files []string
	for _, pat := range []string{"templates/*", "values.yaml", "ci/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(dir, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range envRef.FindAllString(string(b), -1) {
			found[name] = append(found[name], rel)
		}
		if filepath.Ext(f) != ".yaml" || filepath.Base(filepath.Dir(f)) == "templates" {
			continue
		}
		var values struct {
			Config map[string]any `yaml:"config"`
		}
		if err := yaml.Unmarshal(b, &values); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for key := range values.Config {
			found[cli.EnvName(key)] = append(found[cli.EnvName(key)], rel+" config."+key)
		}
	}
	return found
}

func unknownEnv(chart map[string][]string, known map[string]bool) []string {
	var out []string
	for name, where := range chart {
		if !known[name] {
			out = append(out, name+" (in "+where[0]+")")
		}
	}
	sort.Strings(out)
	return out
}

// TestChartEnv checks that every variable the Helm chart sets is one
// `herald run` reads: Herald ignores a variable no flag reads, so a typo
// in the chart would silently keep a default.
func TestChartEnv(t *testing.T) {
	known := runEnvNames()
	chart := chartEnvNames(t, chartDir)
	for _, must := range []string{"HERALD_BROKERS", "HERALD_DATA_DIR", "HERALD_STAGES", "HERALD_HTTP_ADDR", "HERALD_SEND_DRAIN_TIMEOUT",
		"HERALD_API_TOKEN", "HERALD_KAFKA_SASL_PASSWORD", "HERALD_KAFKA_TLS_CA", "DATABASE_URL", "HERALD_PROVIDER"} {
		if len(chart[must]) == 0 {
			t.Errorf("the chart does not set %s", must)
		}
	}
	if bad := unknownEnv(chart, known); len(bad) > 0 {
		t.Errorf("the chart sets variables herald run does not read: %v", bad)
	}
}

// The check refuses a name no flag has, whether written in a template or
// given as a config key.
func TestChartEnvRefusesUnknown(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "templates"), 0o755)
	os.WriteFile(filepath.Join(dir, "templates", "x.yaml"), []byte("- name: HERALD_PARTITION\n  value: \"12\"\n- name: HERALD_BROKERS\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "values.yaml"), []byte("config:\n  send-concurency: 300\n  send-concurrency: 300\n"), 0o644)
	got := unknownEnv(chartEnvNames(t, dir), runEnvNames())
	want := []string{"HERALD_PARTITION (in templates/x.yaml)", "HERALD_SEND_CONCURENCY (in values.yaml config.send-concurency)"}
	if !slices.Equal(got, want) {
		t.Errorf("refused %v, want %v", got, want)
	}
}

// TestChartSchemaReservedFlags checks the schema's list of flags a config:
// key may not name (the chart sets them from its own values): each is a
// flag, and every variable the templates set is in it, so that no config
// key sets a variable twice.
func TestChartSchemaReservedFlags(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Config struct {
				PropertyNames struct {
					Not struct {
						Enum []string `json:"enum"`
					} `json:"not"`
				} `json:"propertyNames"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	known := runEnvNames()
	reserved := map[string]bool{}
	for _, name := range schema.Properties.Config.PropertyNames.Not.Enum {
		if !known[cli.EnvName(name)] {
			t.Errorf("the schema reserves %q, which is no flag of herald run", name)
		}
		reserved[cli.EnvName(name)] = true
	}
	for name, where := range chartEnvNames(t, chartDir) {
		inTemplates := slices.ContainsFunc(where, func(f string) bool { return strings.HasPrefix(f, "templates"+string(filepath.Separator)) })
		if inTemplates && !reserved[name] {
			t.Errorf("the templates set %s, which the schema lets config: set again", name)
		}
	}
}
