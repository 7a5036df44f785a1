package main

import (
	"os"
	"strings"
	"testing"
)

func good(t *testing.T) string {
	b, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func run(manifest string) error {
	objs, err := Decode(strings.NewReader(manifest))
	if err != nil {
		return err
	}
	return Check(objs)
}

func TestGoodManifestPasses(t *testing.T) {
	objs, err := Decode(strings.NewReader(good(t)))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 4 {
		t.Fatalf("decoded %d objects, want 4: %v", len(objs), objs)
	}
	if err := Check(objs); err != nil {
		t.Fatal(err)
	}
}

// Each case breaks the good manifest in one place; the check must refuse it
// and say why.
func TestRefused(t *testing.T) {
	cases := []struct {
		name, old, new, want string
	}{
		// Strict decoding.
		{"unknown field", "  serviceName: herald\n", "  serviceName: herald\n  replica: 3\n", `unknown field "spec.replica"`},
		{"field in the wrong case", "  replicas: 3\n", "  Replicas: 3\n", `unknown field "spec.Replicas"`},
		{"wrong type", "  replicas: 3\n", "  replicas: three\n", "replicas"},
		{"duplicate field", "  replicas: 3\n", "  replicas: 3\n  replicas: 4\n", `key "replicas" already set`},
		{"unknown field in a container", "          image: herald:test\n", "          image: herald:test\n          imagePolicy: Always\n", `unknown field "spec.template.spec.containers[0].imagePolicy"`},
		{"bad quantity", "limits: {memory: 2Gi}", "limits: {memory: 2 gigs}", "quantities must match"},
		{"unknown kind", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgit", "PodDisruptionBudgit"},
		{"unknown ServiceMonitor field", "      path: /metrics\n", "      path: /metrics\n      honourLabels: true\n", `unknown field "spec.endpoints[0].honourLabels"`},
		// How the objects fit together.
		{"selector not matching the pods", "    metadata:\n      labels: {app: herald}", "    metadata:\n      labels: {app: other}", "does not match its pods"},
		{"Service selecting nothing", "  selector: {app: herald}\n  ports:", "  selector: {app: nobody}\n  ports:", "selects no workload"},
		{"Service target port missing", "      targetPort: http", "      targetPort: metrics", `targetPort "metrics"`},
		{"probe on a missing port", "httpGet: {path: /readyz, port: http}", "httpGet: {path: /readyz, port: web}", `port "web"`},
		{"readiness not on /readyz", "path: /readyz", "path: /healthz", "want /readyz"},
		{"mount of no volume", "            - name: data\n", "            - name: storage\n", `mounts "storage"`},
		{"data dir not a volume", "              value: /data\n", "              value: /var/herald\n", "HERALD_DATA_DIR"},
		{"grace shorter than the drain", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 25", "does not exceed"},
		{"drain shorter than the provider timeout", "              value: 20s\n", "              value: 8s\n", "shorter than the provider timeout"},
		{"variable set twice", "            - name: HERALD_MEMORY_LIMIT\n", "            - name: HERALD_DATA_DIR\n              value: /data\n            - name: HERALD_MEMORY_LIMIT\n", "sets HERALD_DATA_DIR twice"},
		{"memory limit above the container's", "value: 1800MiB", "value: 3GiB", "not below the memory limit"},
		{"invalid name", "  name: herald\nspec:\n  serviceName", "  name: Herald_1\nspec:\n  serviceName", "Herald_1"},
		{"ServiceMonitor selecting no Service", `matchLabels: {metrics: "true"}`, `matchLabels: {metrics: "yes"}`, "selects no Service"},
		{"ServiceMonitor on a missing port", "    - port: http\n", "    - port: metrics\n", `endpoint port "metrics"`},
	}
	base := good(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(base, c.old) != 1 {
				t.Fatalf("the good manifest holds %q %d times, want once", c.old, strings.Count(base, c.old))
			}
			err := run(strings.Replace(base, c.old, c.new, 1))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestEmptyRefused(t *testing.T) {
	if _, err := Decode(strings.NewReader("# nothing\n---\n")); err == nil {
		t.Fatal("a stream without objects accepted")
	}
}
