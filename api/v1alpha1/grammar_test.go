package v1alpha1_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	openapispec "k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// One grammar per field: the CRD's markers are strings, so they cannot name
// the Go constants the controller and the runner validate with. These tests
// hold the two together on the generated CRD: the patterns, limits and
// defaults are the same text, and the API server's schema validator and the
// Go validators accept and refuse the same inputs.

const crdPath = "../../config/crd/bases/operations.kubeedge.io_nodeupgradejobs.yaml"

// specSchema is the generated CRD's schema of v1alpha1's spec.
func specSchema(t *testing.T) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	b, err := os.ReadFile(crdPath)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(b, crd); err != nil {
		t.Fatal(err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == v1alpha1.GroupVersion.Version {
			spec := v.Schema.OpenAPIV3Schema.Properties["spec"]
			return &spec
		}
	}
	t.Fatalf("%s serves no %s", crdPath, v1alpha1.GroupVersion.Version)
	return nil
}

// fieldValidator validates a value against the CRD's schema of one spec
// field with kube-openapi's validator, the one the API server's CRD
// validation runs (k8s.io/apiextensions-apiserver's validation package
// wraps it, but needs k8s.io/apiserver, which this module does not use).
func fieldValidator(t *testing.T, spec *apiextensionsv1.JSONSchemaProps, field string) *validate.SchemaValidator {
	t.Helper()
	prop, ok := spec.Properties[field]
	if !ok {
		t.Fatalf("the CRD's spec has no %s", field)
	}
	raw, err := json.Marshal(prop)
	if err != nil {
		t.Fatal(err)
	}
	schema := &openapispec.Schema{}
	if err := json.Unmarshal(raw, schema); err != nil {
		t.Fatal(err)
	}
	return validate.NewSchemaValidator(schema, nil, "spec."+field, strfmt.Default)
}

// crdAccepts reports whether the CRD's schema accepts value, and its
// complaint when it does not.
func crdAccepts(v *validate.SchemaValidator, value string) (bool, string) {
	res := v.Validate(value)
	if res.IsValid() {
		return true, ""
	}
	var why []string
	for _, e := range res.Errors {
		why = append(why, e.Error())
	}
	return false, strings.Join(why, "; ")
}

func TestGrammarsAreTheCRDs(t *testing.T) {
	spec := specSchema(t)
	checks := []struct {
		what      string
		crd, want string
	}{
		{"spec.version pattern", spec.Properties["version"].Pattern, imageref.VersionPattern},
		{"spec.version maxLength", fmt.Sprint(*spec.Properties["version"].MaxLength), fmt.Sprint(imageref.MaxVersionLength)},
		{"spec.image maxLength", fmt.Sprint(*spec.Properties["image"].MaxLength), fmt.Sprint(imageref.MaxImageLength)},
		{"spec.image default", string(spec.Properties["image"].Default.Raw), `"` + imageref.DefaultImage + `"`},
		{"spec.failureTolerate pattern", spec.Properties["failureTolerate"].Pattern, rollout.FailureToleratePattern},
		{"spec.failureTolerate maxLength", fmt.Sprint(*spec.Properties["failureTolerate"].MaxLength), fmt.Sprint(rollout.MaxFailureTolerateLength)},
		{"spec.failureTolerate default", string(spec.Properties["failureTolerate"].Default.Raw), `"` + v1alpha1.DefaultFailureTolerate + `"`},
		{"spec.timeoutSeconds default", string(spec.Properties["timeoutSeconds"].Default.Raw), fmt.Sprint(v1alpha1.DefaultTimeoutSeconds)},
		{"spec.timeoutSeconds maximum", fmt.Sprint(*spec.Properties["timeoutSeconds"].Maximum), fmt.Sprint(v1alpha1.MaxTimeoutSeconds)},
		{"spec.concurrency default", string(spec.Properties["concurrency"].Default.Raw), fmt.Sprint(v1alpha1.DefaultConcurrency)},
	}
	for _, c := range checks {
		if c.crd != c.want {
			t.Errorf("%s: the CRD has %s, Go has %s: change the marker in nodeupgradejob_types.go or the constant, then make manifests", c.what, c.crd, c.want)
		}
	}
}

// grammarCase is one input, and whether the two sides are known to differ
// on it (with why): a difference not listed fails the test.
type grammarCase struct {
	value string
	// differs explains a known difference; "" means both sides must agree.
	differs string
}

func TestCRDAndGoValidatorsAgree(t *testing.T) {
	spec := specSchema(t)
	fields := []struct {
		field string
		goOK  func(string) error
		cases []grammarCase
	}{{
		field: "version",
		goOK:  imageref.ValidateVersion,
		cases: []grammarCase{
			{value: "v1.21.0"}, {value: "v1.21.0-beta.1"}, {value: "v1.21.0-rc_1-x.y"}, {value: "v10.200.3000"},
			{value: "1.21.0"}, {value: "v1.21"}, {value: "v1.21.0-"}, {value: "v1.21.0--a"}, {value: "v1.21.0+build"},
			{value: "V1.21.0"}, {value: "v1.21.0 "}, {value: " v1.21.0"}, {value: "v1.21.0\n"}, {value: "v1.21.0-beta/1"},
			{value: "v١.21.0"}, {value: "v1.21.0;rm -rf /"}, {value: "v1.2.3-" + strings.Repeat("a", 121)}, {value: "v1.2.3-" + strings.Repeat("a", 122)},
			{value: ""},
		},
	}, {
		field: "failureTolerate",
		goOK:  func(s string) error { _, err := rollout.ParseFailureTolerate(s); return err },
		cases: []grammarCase{
			{value: "0"}, {value: "0.1"}, {value: "0.25"}, {value: "0.000001"}, {value: "1"}, {value: "1.0"}, {value: "1.000"},
			{value: "0." + strings.Repeat("9", 18)}, {value: "0." + strings.Repeat("9", 19)},
			{value: "1/2"}, {value: "1e-1"}, {value: ".5"}, {value: "0."}, {value: "00.1"}, {value: "+0.1"}, {value: "-0.1"},
			{value: "1.5"}, {value: "1.01"}, {value: "2"}, {value: "10%"}, {value: " 0.1"}, {value: "0.1\n"}, {value: "0,1"},
			// An empty failureTolerate is the default to ConfigFromSpec and
			// never reaches ParseFailureTolerate; as a value both refuse it.
			{value: ""},
		},
	}, {
		field: "image",
		goOK:  func(s string) error { _, err := imageref.Repository(s); return err },
		cases: []grammarCase{
			{value: "kubeedge/installation-package"}, {value: "installation-package"}, {value: "docker.io/kubeedge/installation-package:v1.21.0"},
			{value: "registry.example.com:5000/team/kubeedge/installation-package"}, {value: "Registry.Example.com/kubeedge/pkg"},
			{value: "kubeedge/installation-package@sha256:" + strings.Repeat("a", 64)},
			{value: "kubeedge/installation-package:v1.21.0@sha256:" + strings.Repeat("0", 64)},
			{value: "kubeedge/Installation-Package"}, {value: "kubeedge//pkg"}, {value: "kubeedge/pkg/"}, {value: "/kubeedge/pkg"},
			{value: "kubeedge/pkg:"}, {value: "kubeedge/pkg:-tag"}, {value: "kubeedge/pkg:" + strings.Repeat("t", 129)},
			{value: "kubeedge/pkg@sha256:abc"}, {value: "kubeedge/pkg@sha256:" + strings.Repeat("A", 64)},
			{value: "kubeedge/pkg@sha512:" + strings.Repeat("a", 128)}, {value: "kubeedge/pkg@sha256:" + strings.Repeat("a", 65)},
			{value: "kubeedge/pkg;rm -rf /"}, {value: "kubeedge/pkg $(id)"}, {value: "kube_edge/pkg"}, {value: "kube__edge/pkg"}, {value: "kube___edge/pkg"},
			{value: "-host/pkg"}, {value: "host-/pkg"}, {value: "host:99999/pkg"},
			{value: "host:123456/pkg"},
			{value: strings.Repeat("a", 256)},
			{value: "", differs: "an empty image is the default image for imageref; the CRD applies its default only when the field is absent, and its pattern refuses an explicit empty string"},
		},
	}}
	for _, f := range fields {
		validator := fieldValidator(t, spec, f.field)
		for _, c := range f.cases {
			name := fmt.Sprintf("%s=%q", f.field, c.value)
			if len(name) > 60 {
				name = name[:60]
			}
			t.Run(name, func(t *testing.T) {
				crdOK, crdWhy := crdAccepts(validator, c.value)
				goErr := f.goOK(c.value)
				agree := crdOK == (goErr == nil)
				switch {
				case c.differs == "" && !agree:
					t.Errorf("the CRD accepts: %t (%s), Go accepts: %t (%v)", crdOK, crdWhy, goErr == nil, goErr)
				case c.differs != "" && agree:
					t.Errorf("listed as a difference (%s), but both sides now agree (accept: %t): drop the note", c.differs, crdOK)
				}
			})
		}
	}
}
