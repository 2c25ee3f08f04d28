package controller

import (
	"bytes"
	"os"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// verbsUsed is every API call the controller makes, by resource, found in
// pkg/controller and pkg/manager: the client calls (Get, List, Watch through
// the cache, Patch, Create, Delete) and client-go's leader election
// (LeaseLock: Get, Create, Update). Update on jobs/finalizers is the API
// server's condition for blockOwnerDeletion on the pods' owner reference.
var verbsUsed = map[string][]string{
	"/nodes":                                 {"get", "list", "watch"},
	"operations.kubeedge.io/nodeupgradejobs": {"get", "list", "patch", "watch"},
	"operations.kubeedge.io/nodeupgradejobs/status":     {"patch"},
	"operations.kubeedge.io/nodeupgradejobs/finalizers": {"update"},
	"/pods":                      {"create", "delete", "get", "list", "patch", "watch"},
	"coordination.k8s.io/leases": {"create", "get", "update"},
	"events.k8s.io/events":       {"create", "patch"},
}

// TestGeneratedRBACIsWhatTheCodeUses compares config/rbac/role.yaml (made
// from the +kubebuilder:rbac markers) with the calls the code makes, so a
// verb granted and never used, or used and never granted, fails here.
func TestGeneratedRBACIsWhatTheCodeUses(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile("../../config/rbac/role.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	granted := map[string][]string{}
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 || bytes.Equal(bytes.TrimSpace(doc), []byte("---")) {
			continue
		}
		var role rbacv1.ClusterRole // Role and ClusterRole share the rules' shape
		g.Expect(yaml.Unmarshal(doc, &role)).To(Succeed())
		for _, rule := range role.Rules {
			for _, group := range rule.APIGroups {
				for _, res := range rule.Resources {
					key := group + "/" + res
					granted[key] = append(granted[key], rule.Verbs...)
				}
			}
		}
	}
	for key := range granted {
		sort.Strings(granted[key])
		g.Expect(strings.Contains(strings.Join(granted[key], ","), "*")).To(BeFalse(), "%s: no wildcard verbs", key)
	}
	g.Expect(granted).To(Equal(verbsUsed))
}
