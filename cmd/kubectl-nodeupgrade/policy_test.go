package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
)

// The plugin reads config/manager's own Deployment as the controller reads
// its flags.
func TestDeploymentFlagsOfTheShippedManifest(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var dep *appsv1.Deployment
	for doc := range strings.SplitSeq(string(raw), "\n---") {
		d := &appsv1.Deployment{}
		if err := yaml.Unmarshal([]byte(doc), d); err == nil && d.Kind == "Deployment" {
			dep = d
		}
	}
	if dep == nil {
		t.Fatal("no Deployment in config/manager/manager.yaml")
	}
	cfg, err := deploymentFlags(dep)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Controller.AllowedImageRepositories; len(got) != 1 || got[0] != "docker.io/kubeedge/installation-package" {
		t.Errorf("allowed repositories %v", got)
	}
}

// TestPlanAppliesTheControllersPolicy: `plan` refuses what the running
// controller refuses, with the same reason and order, taking the
// allow-list and the edge label from its Deployment; without the
// Deployment it says the allow-list is not applied.
func TestPlanAppliesTheControllersPolicy(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: controllerDeployment, Namespace: defaultNamespace},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "manager", Args: []string{"--leader-elect", "-v=2", "--runner-image=$(RUNNER_IMAGE)",
				"--allowed-image-repositories=registry.example.com/kubeedge/", "--edge-node-label", "example.com/edge"},
		}}}}}}
	a := &app{client: fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(dep).Build(),
		namespace: defaultNamespace, edgeNodeLabel: controller.DefaultEdgeNodeLabel}
	policy, warning := a.controllerPolicy(context.Background())
	if warning != "" {
		t.Fatalf("warning %q", warning)
	}
	if policy.EdgeNodeLabel != "example.com/edge" || len(policy.AllowedImageRepositories) != 1 || policy.AllowedImageRepositories[0] != "registry.example.com/kubeedge/" {
		t.Fatalf("policy %+v", policy)
	}

	job, nodes, pods := planFixture()
	// The fixture's nodes carry the default label.
	sameLabel := policy
	sameLabel.EdgeNodeLabel = controller.DefaultEdgeNodeLabel
	for _, c := range []struct {
		name   string
		mutate func(*v1alpha1.NodeUpgradeJobSpec)
		want   string
	}{
		{"not allowed", func(*v1alpha1.NodeUpgradeJobSpec) {}, `image repository "docker.io/kubeedge/installation-package" is not allowed by this controller`},
		{"v1alpha2's check items", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.Image = "registry.example.com/kubeedge/installation-package"
			s.CheckItems = []string{"gpu"}
		}, `spec.checkItems[0]: "gpu" is not a check item`},
		{"allowed", func(s *v1alpha1.NodeUpgradeJobSpec) { s.Image = "registry.example.com/kubeedge/installation-package" }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := job.DeepCopy()
			c.mutate(&j.Spec)
			report := planJob(j, nodes, pods, sameLabel, now, timeoutPerNode(time.Minute))
			if c.want == "" {
				if report.Refusal != "" || len(report.Waves) == 0 {
					t.Errorf("refusal %q, %d waves", report.Refusal, len(report.Waves))
				}
				return
			}
			if !strings.Contains(report.Refusal, c.want) || len(report.Waves) != 0 {
				t.Errorf("refusal %q, %d waves; want %q and none", report.Refusal, len(report.Waves), c.want)
			}
		})
	}

	a.client = fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).Build()
	if _, warning := a.controllerPolicy(context.Background()); !strings.Contains(warning, "allow-list is not applied") {
		t.Errorf("no Deployment: warning %q", warning)
	}
	a.policy.allowed = []string{"kubeedge/"}
	if policy, warning := a.controllerPolicy(context.Background()); warning != "" || policy.AllowedImageRepositories[0] != "docker.io/kubeedge/" {
		t.Errorf("--allowed-image-repositories: %+v, %q", policy, warning)
	}
}
