package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The product binary links neither the load test nor Herald's test
// helpers, and no Herald package in it imports testing. (Goka v1.1.17
// itself imports testing from non-test files, mockbuilder.go and
// storage/test.go, so the standard package is in the binary through Goka
// alone; this test names every importer it finds.)
func TestBinaryLinksNoTestTools(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/herald-dispatch/herald/"
	allowed := map[string]bool{"github.com/lovoo/goka": true, "github.com/lovoo/goka/storage": true}
	var pkgs int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if strings.HasPrefix(pkg, mod) {
			pkgs++
			for _, bad := range []string{"loadtest", "heraldtest", "chaos"} {
				if strings.Contains(pkg, "/"+bad) {
					t.Errorf("herald links %s", pkg)
				}
			}
		}
		for _, imp := range strings.Fields(imports) {
			if imp == "testing" && !allowed[pkg] {
				t.Errorf("%s imports testing", pkg)
			}
		}
	}
	if pkgs < 10 {
		t.Fatalf("go list named only %d Herald packages: %s", pkgs, out)
	}
}
