package controller

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// grant is where RBAC grants: the ClusterRole (cluster-wide), or a Role in
// a namespace.
type grant struct{ Kind, Namespace string }

func (g grant) String() string {
	if g.Namespace == "" {
		return g.Kind
	}
	return g.Kind + " in " + g.Namespace
}

// rules are a role's grants: verbs (sorted) by "group/resource".
type rules map[string][]string

// codeUses is every API request the controller makes, by where it must be
// granted. Cluster-wide: the nodes and the cluster-scoped jobs. In the
// controller's namespace (--namespace, nodeupgrade-system by default): its
// pods, the status shards of large jobs (ConfigMaps), and client-go's leader election (LeaseLock: get, create, update).
// In default: Events, which the recorder writes there for cluster-scoped
// jobs. Update on jobs/finalizers is the API server's condition for
// blockOwnerDeletion on the pods' owner reference.
var codeUses = map[grant]rules{
	{Kind: "ClusterRole"}: {
		"/nodes":                                 {"get", "list", "patch", "watch"},
		"operations.kubeedge.io/nodeupgradejobs": {"get", "list", "patch", "watch"},
		"operations.kubeedge.io/nodeupgradejobs/status":     {"patch"},
		"operations.kubeedge.io/nodeupgradejobs/finalizers": {"update"},
	},
	{Kind: "Role", Namespace: v1alpha1.DefaultNamespace}: {
		"/pods":                      {"create", "delete", "get", "list", "patch", "watch"},
		"/configmaps":                {"create", "get", "list", "update", "watch"},
		"coordination.k8s.io/leases": {"create", "get", "update"},
	},
	{Kind: "Role", Namespace: metav1.NamespaceDefault}: {
		"events.k8s.io/events": {"create", "patch"},
	},
}

// readRBAC reads the Roles, ClusterRoles and bindings of a config/rbac file,
// each by where it grants.
func readRBAC(t *testing.T, path string) (roles map[grant]rules, bindings map[grant]rbacv1.RoleBinding) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	roles, bindings = map[grant]rules{}, map[grant]rbacv1.RoleBinding{}
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		var obj struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
			Rules             []rbacv1.PolicyRule `json:"rules"`
			RoleRef           rbacv1.RoleRef      `json:"roleRef"`
			Subjects          []rbacv1.Subject    `json:"subjects"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch obj.Kind {
		case "Role", "ClusterRole":
			g := grant{Kind: obj.Kind, Namespace: obj.Namespace}
			if _, dup := roles[g]; dup {
				t.Fatalf("%s: two %ss", path, g)
			}
			if obj.Name != "nodeupgrade-controller" {
				t.Fatalf("%s: %s is named %q", path, g, obj.Name)
			}
			r := rules{}
			for _, rule := range obj.Rules {
				for _, group := range rule.APIGroups {
					for _, res := range rule.Resources {
						r[group+"/"+res] = append(r[group+"/"+res], rule.Verbs...)
					}
				}
			}
			for res := range r {
				slices.Sort(r[res])
			}
			roles[g] = r
		case "RoleBinding", "ClusterRoleBinding":
			bindings[grant{Kind: obj.RoleRef.Kind, Namespace: obj.Namespace}] = rbacv1.RoleBinding{
				ObjectMeta: obj.ObjectMeta, RoleRef: obj.RoleRef, Subjects: obj.Subjects}
		}
	}
	return roles, bindings
}

// namespaced reports whether "group/resource[/subresource]" is a
// namespaced resource, from the kinds' real scopes.
func namespaced(t *testing.T, resource string) bool {
	t.Helper()
	group, rest, _ := strings.Cut(resource, "/")
	plural, _, _ := strings.Cut(rest, "/")
	gvk, err := testRESTMapper.KindFor(schema.GroupVersionResource{Group: group, Resource: plural})
	if err != nil {
		t.Fatalf("scope of %s: %v", resource, err)
	}
	m, err := testRESTMapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatal(err)
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace
}

// The generated RBAC (config/rbac/role.yaml, from the +kubebuilder:rbac
// markers) grants what the code uses, each Role and the ClusterRole on its
// own: a namespaced resource granted cluster-wide, or in another
// namespace, fails here. Each is bound to the controller's ServiceAccount
// where it grants.
func TestGeneratedRBACIsScopedPerRole(t *testing.T) {
	g := NewWithT(t)
	roles, _ := readRBAC(t, "../../config/rbac/role.yaml")
	_, bindings := readRBAC(t, "../../config/rbac/role_binding.yaml")
	for where, r := range roles {
		for res, verbs := range r {
			g.Expect(verbs).NotTo(ContainElement("*"), "%s: no wildcard verbs on %s", where, res)
			if where.Kind == "ClusterRole" {
				g.Expect(namespaced(t, res)).To(BeFalse(), "the ClusterRole grants namespaced %s in every namespace", res)
			} else {
				g.Expect(namespaced(t, res)).To(BeTrue(), "%s grants cluster-scoped %s, which a Role cannot", where, res)
			}
		}
		b, ok := bindings[where]
		g.Expect(ok).To(BeTrue(), "%s is bound in role_binding.yaml", where)
		g.Expect(b.RoleRef.Name).To(Equal("nodeupgrade-controller"))
		g.Expect(b.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "nodeupgrade-controller", Namespace: v1alpha1.DefaultNamespace}))
	}
	g.Expect(DefaultOptions().Namespace).To(Equal(v1alpha1.DefaultNamespace), "the pods and the Lease are where --namespace defaults to")
	for where, want := range codeUses {
		g.Expect(roles).To(HaveKey(where), "no %s", where)
		g.Expect(roles[where]).To(Equal(want), "%s", where)
	}
	g.Expect(roles).To(HaveLen(len(codeUses)), "no role beyond these")
}

// Every request the reconciler makes over a job's life (dispatch, success,
// failure, deletion, the orphan sweep of another job's pod), read from its client calls rather
// than from a list, is granted where it is made, cache reads counting as
// the informer's list and watch.
func TestEveryReconcilerRequestIsGranted(t *testing.T) {
	g := NewWithT(t)
	roles, _ := readRBAC(t, "../../config/rbac/role.yaml")
	h := newHarness(t, testJob("rbac", 2, "a", "b", "c"), edgeNodes("a", "b", "c"), nil)
	h.mustReconcile()
	h.finish("a", true)
	h.finish("b", false)
	h.mustReconcile()
	g.Expect(h.api.Delete(h.ctx, h.stored())).To(Succeed())
	h.mustReconcile()
	g.Expect(h.api.Create(h.ctx, trackedPod("z", "gone", "uid-gone"))).To(Succeed())
	h.r.sweepOrphans(h.ctx)
	g.Expect(h.pods()).To(BeEmpty(), "the job's pods and the orphan are gone")

	// A sharded job, with a lost shard write read around the cache.
	hs, _ := shardedHarness(t, 3)
	hs.mustReconcile()
	hs.finish("edge-00", true)
	hs.refuse = func(w write) error {
		if w.Kind == "ConfigMap" && w.Verb == "update" {
			return errors.New("lost")
		}
		return nil
	}
	_, _ = hs.reconcile()
	hs.refuse = nil
	hs.mustReconcile()
	maps.Copy(h.requests, hs.requests)

	granted := func(req request) bool {
		for _, where := range []grant{{Kind: "ClusterRole"}, {Kind: "Role", Namespace: req.Namespace}} {
			if slices.Contains(roles[where][req.Resource], req.Verb) {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	for req := range h.requests {
		g.Expect(granted(req)).To(BeTrue(), "%s %s in %q is not granted", req.Verb, req.Resource, req.Namespace)
		used[fmt.Sprintf("%s %s", req.Verb, req.Resource)] = true
	}
	// What is granted for the reconciler's resources and no request of its
	// used: get on nodes and pods (their reads come from the informer,
	// which lists and watches). Kept, as controller-runtime's markers
	// usually grant them; listed here so a change either way is seen.
	var unused []string
	for _, where := range []grant{{Kind: "ClusterRole"}, {Kind: "Role", Namespace: v1alpha1.DefaultNamespace}} {
		for res, verbs := range roles[where] {
			for _, v := range verbs {
				if res != "coordination.k8s.io/leases" && !used[v+" "+res] {
					unused = append(unused, v+" "+res)
				}
			}
		}
	}
	g.Expect(unused).To(ConsistOf("get /nodes", "get /pods"))
}
