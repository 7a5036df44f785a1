package archtest

import (
	"os"
	"path/filepath"
)

// writeFile writes text to path, making its directories.
func writeFile(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
