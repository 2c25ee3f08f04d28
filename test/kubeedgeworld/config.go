package kubeedgeworld

import (
	"fmt"
	"os/exec"
	"strings"

	"sigs.k8s.io/yaml"
)

// editDefaultConfig runs `binary --defaultconfig` (as KubeEdge's docs do to
// make a config), applies sets (dotted path => value) and returns the YAML.
// A path whose parent is missing is an error: a renamed field must fail the
// world loudly, not be ignored by the component.
func editDefaultConfig(binary string, sets map[string]any) ([]byte, error) {
	out, err := exec.Command(binary, "--defaultconfig").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --defaultconfig: %w", binary, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse %s --defaultconfig: %w", binary, err)
	}
	for p, v := range sets {
		if err := setPath(doc, p, v); err != nil {
			return nil, fmt.Errorf("%s config: %w", binary, err)
		}
	}
	return yaml.Marshal(doc)
}

func setPath(doc map[string]any, dotted string, v any) error {
	keys := strings.Split(dotted, ".")
	m := doc
	for i, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return fmt.Errorf("no map at %s", strings.Join(keys[:i+1], "."))
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
	return nil
}
