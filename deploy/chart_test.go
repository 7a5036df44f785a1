package deploy

import (
	"bytes"
	"os"
	"testing"
)

// The chart ships a copy of the Grafana dashboard (a chart reads no file
// outside its directory): it must be the dashboard itself.
func TestChartDashboard(t *testing.T) {
	want, err := os.ReadFile("grafana/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("helm/herald/dashboards/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/helm/herald/dashboards/herald.json differs from deploy/grafana/herald.json: cp deploy/grafana/herald.json deploy/helm/herald/dashboards/")
	}
}
