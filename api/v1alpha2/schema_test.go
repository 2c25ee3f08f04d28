package v1alpha2_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/randfill"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	v1alpha2 "github.com/nodeupgrade/nodeupgrade/api/v1alpha2"
)

// The CRD serves v1alpha1 and v1alpha2 with conversion strategy None: the API
// server only rewrites apiVersion, then prunes the object to the schema of
// the version it is read or written in. That loses nothing exactly when both
// schemas hold the same fields, which these tests check on the generated CRD.

const ourCRD = "../../config/crd/bases/operations.kubeedge.io_nodeupgradejobs.yaml"

func readCRD(t testing.TB, path string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(b, crd); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return crd
}

func versionSchema(t testing.TB, crd *apiextensionsv1.CustomResourceDefinition, version string) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	for _, v := range crd.Spec.Versions {
		if v.Name == version {
			return v.Schema.OpenAPIV3Schema
		}
	}
	t.Fatalf("CRD %s has no version %s", crd.Name, version)
	return nil
}

func structural(t testing.TB, crd *apiextensionsv1.CustomResourceDefinition, version string) *structuralschema.Structural {
	t.Helper()
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(versionSchema(t, crd, version), internal, nil); err != nil {
		t.Fatal(err)
	}
	s, err := structuralschema.NewStructural(internal)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func filler(seed int64) *randfill.Filler {
	return randfill.NewWithSeed(seed).NilChance(0.2).NumElements(1, 3).Funcs(
		func(t *metav1.Time, c randfill.Continue) { *t = metav1.Unix(c.Int63n(1<<33), 0) },
		// Metadata is not pruned by the version schemas; keep it small.
		func(m *metav1.ObjectMeta, c randfill.Continue) { m.Name = "job" },
		func(*metav1.TypeMeta, randfill.Continue) {},
	)
}

// pruned returns the fields the API server would drop from obj under s.
func pruned(t *testing.T, obj any, s *structuralschema.Structural) []string {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var u map[string]any
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatal(err)
	}
	return pruning.PruneWithOptions(u, s, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
}

// FuzzNoFieldLostBetweenVersions fills every field of a job of either
// version at random and checks that neither version's schema prunes any of
// them: a job written in one version reads back whole in the other.
func FuzzNoFieldLostBetweenVersions(f *testing.F) {
	crd := readCRD(f, ourCRD)
	schemas := map[string]*structuralschema.Structural{}
	for _, v := range []string{"v1alpha1", "v1alpha2"} {
		schemas[v] = structural(f, crd, v)
	}
	for seed := range int64(50) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed int64) {
		one := &v1alpha1.NodeUpgradeJob{}
		filler(seed).Fill(one)
		two := &v1alpha2.NodeUpgradeJob{}
		filler(seed).Fill(two)
		for _, obj := range []any{one, two} {
			for v, s := range schemas {
				if p := pruned(t, obj, s); len(p) != 0 {
					t.Errorf("%T read as %s loses %v", obj, v, p)
				}
			}
		}
	})
}

// TestSchemaHoldsKubeEdgesFields checks that each version of this CRD has
// every field of KubeEdge's CRD for that version with the same type and
// list/map semantics KubeEdge's clients rely on, and requires no more than
// KubeEdge does (KubeEdge v1.20.0's v1alpha1; v1.22.0's v1alpha1 and v1alpha2).
func TestSchemaHoldsKubeEdgesFields(t *testing.T) {
	ours := readCRD(t, ourCRD)
	for _, tc := range []struct{ file, version string }{
		{"../../test/api/testdata/kubeedge/v1.20.0/operations_v1alpha1_nodeupgradejob.yaml", "v1alpha1"},
		{"../../test/api/testdata/kubeedge/v1.22.0/operations_v1alpha2_nodeupgradejob.yaml", "v1alpha1"},
		{"../../test/api/testdata/kubeedge/v1.22.0/operations_v1alpha2_nodeupgradejob.yaml", "v1alpha2"},
	} {
		t.Run(filepath.Base(filepath.Dir(tc.file))+"/"+tc.version, func(t *testing.T) {
			theirs := versionSchema(t, readCRD(t, tc.file), tc.version)
			mine := versionSchema(t, ours, tc.version)
			// v1alpha1 keeps the seed's validation (spec.version required,
			// and more); v1alpha2 must accept whatever KubeEdge accepts.
			walk(t, "", theirs, mine, tc.version == "v1alpha2")
		})
	}
	// Both versions of this CRD hold the same fields.
	a, b := map[string]string{}, map[string]string{}
	paths("", versionSchema(t, ours, "v1alpha1"), a)
	paths("", versionSchema(t, ours, "v1alpha2"), b)
	for p, typ := range a {
		if b[p] != typ {
			t.Errorf("%s: %q in v1alpha1, %q in v1alpha2", p, typ, b[p])
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			t.Errorf("%s: in v1alpha2 only", p)
		}
	}
}

func walk(t *testing.T, path string, theirs, mine *apiextensionsv1.JSONSchemaProps, strict bool) {
	t.Helper()
	if mine == nil {
		t.Errorf("%s: missing", path)
		return
	}
	if theirs.Type != mine.Type || theirs.Format != mine.Format && (path != ".spec.timeoutSeconds" || mine.Format != "int64") {
		t.Errorf("%s: KubeEdge has %s/%s, this CRD %s/%s", path, theirs.Type, theirs.Format, mine.Type, mine.Format)
	}
	for _, r := range mine.Required {
		if strict && !slices.Contains(theirs.Required, r) {
			t.Errorf("%s: this CRD requires %s, KubeEdge does not", path, r)
		}
	}
	for _, r := range theirs.Required {
		if !slices.Contains(mine.Required, r) {
			t.Errorf("%s: KubeEdge requires %s, this CRD does not", path, r)
		}
	}
	for name, p := range theirs.Properties {
		var sub *apiextensionsv1.JSONSchemaProps
		if s, ok := mine.Properties[name]; ok {
			sub = &s
		}
		walk(t, path+"."+name, &p, sub, strict)
	}
	if theirs.Items != nil && theirs.Items.Schema != nil {
		if mine.Items == nil || mine.Items.Schema == nil {
			t.Errorf("%s[]: missing", path)
			return
		}
		walk(t, path+"[]", theirs.Items.Schema, mine.Items.Schema, strict)
	}
	if theirs.AdditionalProperties != nil && theirs.AdditionalProperties.Schema != nil {
		if mine.AdditionalProperties == nil || mine.AdditionalProperties.Schema == nil {
			t.Errorf("%s{}: missing", path)
			return
		}
		walk(t, path+"{}", theirs.AdditionalProperties.Schema, mine.AdditionalProperties.Schema, strict)
	}
}

func paths(path string, s *apiextensionsv1.JSONSchemaProps, out map[string]string) {
	out[path] = s.Type
	for name, p := range s.Properties {
		paths(path+"."+name, &p, out)
	}
	if s.Items != nil && s.Items.Schema != nil {
		paths(path+"[]", s.Items.Schema, out)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		paths(path+"{}", s.AdditionalProperties.Schema, out)
	}
}

// TestEverySpecFieldButSuspendIsImmutable guards the per-field transition
// rules that replaced one rule on the whole spec: a field added to the spec
// later is mutable unless it gets its own rule, and this test says so. The
// rules themselves are tested against the API server in test/api.
func TestEverySpecFieldButSuspendIsImmutable(t *testing.T) {
	// Both versions: kubectl writes through v1alpha2, the controller reads
	// v1alpha1.
	for _, version := range []string{"v1alpha1", "v1alpha2"} {
		t.Run(version, func(t *testing.T) {
			specFieldsImmutable(t, versionSchema(t, readCRD(t, ourCRD), version).Properties["spec"])
		})
	}
}

func specFieldsImmutable(t *testing.T, spec apiextensionsv1.JSONSchemaProps) {
	if _, ok := spec.Properties["suspend"]; !ok {
		t.Fatal("spec.suspend is missing")
	}
	for name := range spec.Properties {
		var rules []apiextensionsv1.ValidationRule
		for _, r := range spec.XValidations {
			if strings.Contains(r.Rule, "oldSelf."+name+")") || strings.Contains(r.Rule, "oldSelf."+name+" ") || strings.HasSuffix(r.Rule, "oldSelf."+name) {
				rules = append(rules, r)
			}
		}
		if name == "suspend" || name == "approvedNodes" {
			if len(rules) != 0 {
				t.Errorf("spec.%s must stay mutable, has %v", name, rules)
			}
			continue
		}
		if len(rules) != 1 {
			t.Errorf("spec.%s: want one transition rule, have %d", name, len(rules))
			continue
		}
		if r := rules[0]; r.FieldPath != "."+name || !strings.HasPrefix(r.Message, "spec."+name+" is immutable") {
			t.Errorf("spec.%s: the rule must name the field: fieldPath %q, message %q", name, r.FieldPath, r.Message)
		}
	}
}

// TestPrinterColumnsAreTheSame: kubectl reads the preferred version,
// v1alpha2, so a column added to v1alpha1 alone never shows in `kubectl get`.
func TestPrinterColumnsAreTheSame(t *testing.T) {
	crd := readCRD(t, ourCRD)
	columns := map[string][]apiextensionsv1.CustomResourceColumnDefinition{}
	for _, v := range crd.Spec.Versions {
		columns[v.Name] = v.AdditionalPrinterColumns
	}
	if !reflect.DeepEqual(columns["v1alpha1"], columns["v1alpha2"]) {
		t.Errorf("printer columns differ:\nv1alpha1 %+v\nv1alpha2 %+v", columns["v1alpha1"], columns["v1alpha2"])
	}
	if !slices.ContainsFunc(columns["v1alpha2"], func(c apiextensionsv1.CustomResourceColumnDefinition) bool { return c.JSONPath == ".spec.suspend" }) {
		t.Error("no column shows spec.suspend")
	}
}
