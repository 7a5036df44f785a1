package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// apiTokenFile is where a generated API token is kept, in the data dir.
const apiTokenFile = "api-token"

// resolveAPIToken returns the API's token: the one given; none when given
// "off"; else the one kept in <dataDir>/api-token, generated (and printed
// to out once) on the first start. The API is never open by default.
func resolveAPIToken(given, dataDir string, out io.Writer) (string, error) {
	switch given {
	case "off":
		return "", nil
	case "":
	default:
		return given, nil
	}
	path := filepath.Join(dataDir, apiTokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		return "", fmt.Errorf("api token: %s is empty (delete it to have a new token generated)", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("api token: %w", err)
	}
	tok := rand.Text()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("api token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	fmt.Fprintf(out, "\nherald: no --api-token given; generated one and kept it in %s (shown only this once):\n\n    %s\n\nSend it as 'Authorization: Bearer <token>'. Set HERALD_API_TOKEN to choose your own, or 'off' for no authentication.\n\n", path, tok)
	return tok, nil
}
