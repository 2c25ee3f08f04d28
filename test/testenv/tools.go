package testenv

import (
	"fmt"
	"os"
	"path/filepath"
)

// Helm is the helm binary the tests run: $NODEUPGRADE_HELM (set by the
// Makefile), else the newest bin/helm-<version>/helm that `make tools` built.
func Helm() (string, error) {
	return pinnedTool("NODEUPGRADE_HELM", "helm-*", "helm", "make tools")
}

// Krew is the krew binary: $NODEUPGRADE_KREW, else bin/krew-<version>/krew.
func Krew() (string, error) {
	return pinnedTool("NODEUPGRADE_KREW", "krew-*", "krew", "make release-tools")
}

// Prometheus is the folder with Debian's prometheus and promtool binaries:
// $NODEUPGRADE_PROMETHEUS, else bin/prometheus-<version>/ as
// hack/prometheus.sh extracts them.
func Prometheus() (string, error) {
	p, err := pinnedTool("NODEUPGRADE_PROMETHEUS", "prometheus-*", "promtool", "hack/prometheus.sh")
	if err != nil {
		return "", err
	}
	return filepath.Dir(p), nil
}

// pinnedTool finds binary name: in the folder or file env names, else in the
// last bin/<pattern>/ (versions sort in name order within a minor).
func pinnedTool(env, pattern, name, how string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			p = filepath.Join(p, name)
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", env, err)
		}
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", pattern, name))
	if len(matches) == 0 {
		return "", fmt.Errorf("no %s in bin/%s: run `%s` (or set $%s)", name, pattern, how, env)
	}
	return matches[len(matches)-1], nil
}
