//go:build kubeedge

package kubeedge

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
	"github.com/nodeupgrade/nodeupgrade/test/monitoring"
	"github.com/nodeupgrade/nodeupgrade/test/projectimage"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// TestInClusterHelm installs the project with Helm as the README's "Install
// with Helm" section says, on the in-cluster world (kube-scheduler,
// kube-controller-manager, a real kubelet node running the chart's two
// replicas from `make image`'s image, a real KubeEdge edge node), while a
// real Prometheus on the host scrapes the replicas as the chart's
// ServiceMonitor describes them (the metrics Service's endpoints). Through
// that install the edge node's upgrade to a broken package fails and rolls
// back, a job's status writes are refused, and the node is upgraded for
// real; every query of the Grafana dashboard must then answer with data
// over the rollout, and the alerts fire as it deserves. Last, the README's
// Helm uninstall leaves nothing but what it says.
func TestInClusterHelm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	helmBin, err := testenv.Helm()
	if err != nil {
		t.Fatal(err)
	}
	img, ref, err := projectimage.Build(ctx, filepath.Join(testenv.RepoRoot(), "bin", "image"))
	if err != nil {
		t.Fatalf("make image: %v", err)
	}
	t.Logf("image %s", ref)
	w := kubeedgeworld.StartT(t, ctx, kubeedgeworld.Options{Nodes: 1, KubeletNodes: 1, ExtraImages: []string{img}})
	edge := w.Nodes()[0]
	c := w.Cluster.Client

	helmHome := t.TempDir()
	runHelm := func(argv []string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, helmBin, argv[1:]...)
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "KUBECONFIG="+w.KubeconfigPath(), "HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"), "HELM_DATA_HOME="+filepath.Join(helmHome, "data"))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		t.Logf("$ %s  (%s)\n%s", strings.Join(argv, " "), time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(string(out)))
	}
	run := func(argv []string) {
		t.Helper()
		if argv[0] == "helm" {
			runHelm(argv)
		} else {
			runFromRepo(t, ctx, w, argv)
		}
	}
	tools := []string{"kubectl", "helm"}

	// Install: the README's commands. The world made the namespace and the
	// registry's pull Secret already (it pushes the installation packages
	// with basic auth), so their create commands are left out; the release
	// adopts the namespace, as it would the one the README's kubectl made.
	start := time.Now()
	for _, argv := range readmeToolCommands(t, "Install with Helm", tools, "create namespace", "create secret") {
		for i, a := range argv {
			a = strings.ReplaceAll(a, "kubeedge-mirror", kubeedgeworld.RegistrySecret)
			argv[i] = strings.ReplaceAll(a, "mirror.example:5000/kubeedge/installation-package", kubeedgeworld.InstallPackageRepo)
		}
		run(argv)
	}
	runFromRepo(t, ctx, w, []string{"kubectl", "rollout", "status", "-n", controllerNS, "deployment/" + controllerName, "--timeout=5m"})
	t.Logf("installed with Helm and rolled out in %s", time.Since(start).Round(time.Second))
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: controllerNS}, ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" || ns.Annotations["meta.helm.sh/release-name"] != "nodeupgrade" {
		t.Errorf("namespace not adopted and labelled by the release: labels %v, annotations %v", ns.Labels, ns.Annotations)
	}
	pods := controllerPods(t, ctx, c)
	if len(pods) != 2 {
		t.Fatalf("want 2 controller replicas, got %d", len(pods))
	}
	for _, p := range pods {
		if p.Spec.NodeName != w.KubeletNodes()[0].Name() {
			t.Errorf("controller pod %s on %q, want the kubelet node", p.Name, p.Spec.NodeName)
		}
		args := strings.Join(p.Spec.Containers[0].Args, " ")
		if !strings.Contains(args, "--image-pull-secrets="+kubeedgeworld.RegistrySecret) || !strings.Contains(args, "--allowed-image-repositories="+kubeedgeworld.InstallPackageRepo) {
			t.Errorf("controller pod %s lacks the values the README's upgrade set: %s", p.Name, args)
		}
	}
	waitLeader(t, ctx, c, "", 2*time.Minute)

	// A real Prometheus on the host scrapes what the ServiceMonitor selects:
	// the metrics Service's endpoints (pod IPs, routed to the kubelet node).
	// Debian's Prometheus is built without Kubernetes service discovery, so
	// the test discovers them from the Service's EndpointSlices into a file
	// Prometheus watches (file_sd), as often as Prometheus would.
	promDir := t.TempDir()
	targetsFile := filepath.Join(promDir, "targets.json")
	discoverCtx, stopDiscovery := context.WithCancel(ctx)
	defer stopDiscovery()
	if err := writeServiceTargets(ctx, c, targetsFile); err != nil {
		t.Fatal(err)
	}
	go func() {
		for discoverCtx.Err() == nil {
			_ = writeServiceTargets(discoverCtx, c, targetsFile)
			time.Sleep(2 * time.Second)
		}
	}()
	prom, err := monitoring.Start(ctx, promDir, `- job_name: nodeupgrade
  file_sd_configs:
  - files: [`+targetsFile+`]
    refresh_interval: 2s
`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)
	defer func() {
		if t.Failed() {
			t.Logf("prometheus log:\n%s", prom.Log())
		}
	}()
	waitFor(t, ctx, 2*time.Minute, "Prometheus to scrape both replicas", func() bool {
		up, _, err := prom.ActiveTargets(ctx)
		return err == nil && up == 2
	})
	rolloutStart := time.Now()

	// 1. The broken package: the upgrade fails on the node, keadm rolls it
	// back, the job fails on its tolerance.
	jw := watchJob(ctx, c, "helm-broken")
	if err := c.Create(ctx, newJob("helm-broken", kubeedgeworld.BrokenVersion, []string{edge.Name()}, 1, nil)); err != nil {
		t.Fatal(err)
	}
	if job := jw.waitFinal(t, ctx, jobTimeout); job.Status.State != v1alpha1.StateFailed {
		t.Errorf("job helm-broken: %s, want Failed: %s", job.Status.State, job.Status.Reason)
	}
	jw.stop()
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "", edge.Name()); err != nil {
		t.Fatalf("the node after its rollback: %v", err)
	}

	// 2. A job whose status writes the API server refuses (an admission
	// policy): the refusal is counted, and the job can still be deleted.
	if res := w.Cluster.KubectlWithInput(ctx, []byte(monitoring.RefuseStatusWrites("helm-refused")), "apply", "-f", "-"); res.Err != nil {
		t.Fatalf("admission policy: %v", res)
	}
	if err := c.Create(ctx, newJob("helm-refused", toVersion, []string{edge.Name()}, 1, nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 2*time.Minute, "Prometheus to see the refused status writes", func() bool {
		s, err := prom.Query(ctx, `nodeupgrade_status_write_failures_total{reason="Forbidden"}`)
		return err == nil && len(s) > 0
	})
	if res := w.Cluster.Kubectl(ctx, "delete", "validatingadmissionpolicy,validatingadmissionpolicybinding", monitoring.RefuseStatusWritesName); res.Err != nil {
		t.Fatalf("delete the admission policy: %v", res)
	}
	if err := c.Delete(ctx, &v1alpha1.NodeUpgradeJob{ObjectMeta: newJob("helm-refused", toVersion, nil, 1, nil).ObjectMeta}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 2*time.Minute, "the refused job to go", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: "helm-refused"}, &v1alpha1.NodeUpgradeJob{}))
	})

	// 3. The real upgrade, through the chart's install.
	before := snapshot(t, ctx, w, edge)
	jw = watchJob(ctx, c, "helm-upgrade")
	defer jw.stop()
	// No checks: the node's disk is the host's, shared with other sessions,
	// and a disk check failed once at 80% (TestInCluster runs one).
	if err := c.Create(ctx, newJob("helm-upgrade", toVersion, []string{edge.Name()}, 1, nil)); err != nil {
		t.Fatal(err)
	}
	if job := jw.waitFinal(t, ctx, jobTimeout); job.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("job helm-upgrade: %s: %s", job.Status.State, job.Status.Reason)
	}
	after := snapshot(t, ctx, w, edge)
	if !strings.HasSuffix(after.kubelet, "kubeedge-"+toVersion) || !after.ready {
		t.Errorf("node at %q ready=%v after the job", after.kubelet, after.ready)
	}
	if got := len(after.starts) - len(before.starts); got != 1 {
		t.Errorf("edgecore started %d times during the job, want 1", got)
		logEdgecoreJournal(t, ctx, edge, before.starts)
	}
	rollout := time.Since(rolloutStart)
	t.Logf("rollout (broken, refused, upgraded) took %s", rollout.Round(time.Second))
	time.Sleep(5 * time.Second) // the last scrapes and rule evaluations

	d, err := monitoring.ReadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	queries := d.Queries(rollout+time.Minute, time.Minute)
	for _, e := range prom.CheckQueries(ctx, queries, rolloutStart) {
		t.Error(e)
	}
	t.Logf("%d dashboard queries answered with data over the rollout", len(queries))
	rules, err := prom.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]string{}
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("rule %s: %s %s", r.Name, r.Health, r.LastError)
		}
		state[r.Name] = r.State
	}
	for name, want := range map[string]string{"NodeUpgradeJobFailed": "firing", "NodeUpgradeControllerNoLeader": "inactive", "NodeUpgradeJobStuck": "inactive"} {
		if state[name] != want {
			t.Errorf("alert %s is %q, want %q", name, state[name], want)
		}
	}
	// The refused writes are more than 10 minutes old only in a slow run.
	if rollout < 9*time.Minute && state["NodeUpgradeStatusWritesFailing"] != "firing" {
		t.Errorf("alert NodeUpgradeStatusWritesFailing is %q, want firing", state["NodeUpgradeStatusWritesFailing"])
	}

	// Uninstall as the README says: jobs, the release, the CRD.
	for _, argv := range readmeToolCommands(t, "Uninstall with Helm", tools) {
		run(argv)
	}
	waitFor(t, ctx, 3*time.Minute, "the namespace and the CRD to go", func() bool {
		nsErr := c.Get(ctx, client.ObjectKey{Name: controllerNS}, &corev1.Namespace{})
		crd := w.Cluster.Kubectl(ctx, "get", "crd", "nodeupgradejobs.operations.kubeedge.io")
		return apierrors.IsNotFound(nsErr) && crd.Err != nil
	})
	for _, kind := range []string{"clusterrole", "clusterrolebinding"} {
		if res := w.Cluster.Kubectl(ctx, "get", kind, "-o", "name"); strings.Contains(res.Stdout, "nodeupgrade") {
			t.Errorf("left behind after helm uninstall: %s", res.Stdout)
		}
	}
	if res := w.Cluster.Kubectl(ctx, "get", "role,rolebinding", "-n", "default", "-o", "name"); strings.Contains(res.Stdout, "nodeupgrade") {
		t.Errorf("left behind in default after helm uninstall: %s", res.Stdout)
	}
}

// writeServiceTargets writes the metrics Service's ready endpoints as a
// Prometheus file_sd target list, each with its pod's name, as a
// ServiceMonitor's endpoints discovery labels them.
func writeServiceTargets(ctx context.Context, c client.Client, path string) error {
	slices := &discoveryv1.EndpointSliceList{}
	if err := c.List(ctx, slices, client.InNamespace(controllerNS), client.MatchingLabels{discoveryv1.LabelServiceName: controllerName + "-metrics"}); err != nil {
		return err
	}
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	groups := []group{}
	for _, s := range slices.Items {
		var port int32
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == "http-metrics" && p.Port != nil {
				port = *p.Port
			}
		}
		for _, e := range s.Endpoints {
			if port == 0 || len(e.Addresses) == 0 || (e.Conditions.Ready != nil && !*e.Conditions.Ready) {
				continue
			}
			g := group{Targets: []string{net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))}, Labels: map[string]string{"namespace": controllerNS}}
			if e.TargetRef != nil {
				g.Labels["pod"] = e.TargetRef.Name
			}
			groups = append(groups, g)
		}
	}
	data, err := json.Marshal(groups)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
