package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
	"github.com/nodeupgrade/nodeupgrade/pkg/jobinput"
	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
)

// controllerDeployment is config/manager's Deployment, in the controller's
// namespace (-n).
const controllerDeployment = "nodeupgrade-controller"

// policyFlags are the controller's flags a plan needs, given to the plugin
// instead of read from the running controller.
type policyFlags struct {
	allowed  []string
	allowAny bool
}

func (a *app) bindPolicyFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&a.policy.allowed, "allowed-image-repositories", nil,
		"The controller's --allowed-image-repositories; default: read from its Deployment ("+controllerDeployment+" in -n)")
	fs.BoolVar(&a.policy.allowAny, "allow-any-image-repository", false,
		"The controller's --allow-any-image-repository; default: read from its Deployment")
}

// controllerPolicy is what the controller's flags say about jobs: the flags
// given to the plugin, else those of the running controller's Deployment,
// parsed by the controller's own flag set. When neither is to be had, the
// plan applies no allow-list and says so in the warning.
func (a *app) controllerPolicy(ctx context.Context) (jobinput.Policy, string) {
	policy := jobinput.Policy{EdgeNodeLabel: a.edgeNodeLabel}
	if a.policy.allowAny {
		return policy, ""
	}
	if len(a.policy.allowed) > 0 {
		allowed, err := imageref.NormalizeAllowList(a.policy.allowed)
		if err != nil {
			return policy, fmt.Sprintf("--allowed-image-repositories: %v: the plan applies no allow-list", err)
		}
		policy.AllowedImageRepositories = allowed
		return policy, ""
	}
	dep := &appsv1.Deployment{}
	if err := a.client.Get(ctx, client.ObjectKey{Namespace: a.namespace, Name: controllerDeployment}, dep); err != nil {
		return policy, "the controller's image allow-list is not applied: " + apiError(err, "get", "deployment "+controllerDeployment+" in "+a.namespace).Error() +
			"; pass --allowed-image-repositories as the controller has it"
	}
	cfg, err := deploymentFlags(dep)
	if err != nil {
		return policy, fmt.Sprintf("the controller's image allow-list is not applied: %v; pass --allowed-image-repositories as the controller has it", err)
	}
	if !a.edgeNodeLabelSet {
		policy.EdgeNodeLabel = cfg.Controller.EdgeNodeLabel
	}
	policy.RequireImageDigest = cfg.Controller.RequireImageDigest
	if cfg.Controller.AllowAnyImageRepository {
		return policy, ""
	}
	if policy.AllowedImageRepositories, err = imageref.NormalizeAllowList(cfg.Controller.AllowedImageRepositories); err != nil {
		return jobinput.Policy{EdgeNodeLabel: policy.EdgeNodeLabel}, fmt.Sprintf("deployment %s: --allowed-image-repositories: %v: the plan applies no allow-list", controllerDeployment, err)
	}
	if len(policy.AllowedImageRepositories) == 0 {
		return policy, fmt.Sprintf("deployment %s has neither --allowed-image-repositories nor --allow-any-image-repository (the controller does not start so): the plan applies no allow-list", controllerDeployment)
	}
	return policy, ""
}

// deploymentFlags parses the controller container's arguments in dep with
// the controller's own flags (pkg/manager.BindFlags). Arguments of other
// flags (klog's -v, controller-runtime's --kubeconfig) are left out: none
// is one a plan reads.
func deploymentFlags(dep *appsv1.Deployment) (*manager.Config, error) {
	containers := dep.Spec.Template.Spec.Containers
	if len(containers) == 0 {
		return nil, fmt.Errorf("deployment %s has no container", dep.Name)
	}
	i := max(slices.IndexFunc(containers, func(c corev1.Container) bool {
		return slices.ContainsFunc(c.Args, func(arg string) bool { return strings.HasPrefix(arg, "--allow") })
	}), 0)
	fs := flag.NewFlagSet(controllerDeployment, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := manager.BindFlags(fs)
	var known []string
	args := containers[i].Args
	for j := 0; j < len(args); j++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[j], "-"), "=")
		f := fs.Lookup(name)
		if f == nil || !strings.HasPrefix(args[j], "-") {
			continue
		}
		known = append(known, args[j])
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && (!ok || !bf.IsBoolFlag()) && j+1 < len(args) {
			j++
			known = append(known, args[j])
		}
	}
	if err := fs.Parse(known); err != nil {
		return nil, fmt.Errorf("deployment %s: container %s's arguments: %w", dep.Name, containers[i].Name, err)
	}
	return cfg, nil
}
