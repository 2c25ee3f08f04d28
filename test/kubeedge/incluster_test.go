//go:build kubeedge

package kubeedge

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
	"github.com/nodeupgrade/nodeupgrade/test/projectimage"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

const (
	controllerName = "nodeupgrade-controller"
	controllerNS   = v1alpha1.DefaultNamespace
)

// TestInCluster deploys the project as users do, from the README's install
// section, on a real cluster: kube-scheduler, kube-controller-manager
// (garbage collection, ServiceAccount tokens) and a real kubelet node run
// the controller's own image under its own ServiceAccount, and it upgrades
// a real KubeEdge edge node. No controller runs outside the cluster here:
// everything the job does, the in-cluster replicas did with their token.
func TestInCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	img, ref, err := projectimage.Build(ctx, filepath.Join(testenv.RepoRoot(), "bin", "image"))
	if err != nil {
		t.Fatalf("make image: %v", err)
	}
	if info, err := os.Stat(img); err == nil {
		t.Logf("image %s: %.1f MB", ref, float64(info.Size())/1e6)
	}
	w := kubeedgeworld.StartT(t, ctx, kubeedgeworld.Options{Nodes: 1, KubeletNodes: 1, ExtraImages: []string{img}})
	edge := w.Nodes()[0]
	c := w.Cluster.Client

	// Install: the README's commands, word for word.
	start := time.Now()
	for _, argv := range readmeInstall(t) {
		runFromRepo(t, ctx, w, argv)
	}
	t.Logf("installed and rolled out in %s", time.Since(start).Round(time.Second))
	// The installation packages are in the world's registry with basic
	// auth: the README's private-registry step names the world's Secret.
	for _, argv := range readmeCommands(t, "Private registries", "create secret") {
		for i, a := range argv {
			a = strings.ReplaceAll(a, "kubeedge-mirror", kubeedgeworld.RegistrySecret)
			a = strings.ReplaceAll(a, "mirror.example:5000/kubeedge/installation-package", kubeedgeworld.InstallPackageRepo)
			if k, v, ok := strings.Cut(a, "='"); ok && strings.HasSuffix(v, "'") {
				a = k + "=" + strings.TrimSuffix(v, "'") // the shell's quotes
			}
			argv[i] = a
		}
		runFromRepo(t, ctx, w, argv)
	}
	runFromRepo(t, ctx, w, []string{"kubectl", "rollout", "status", "-n", controllerNS, "deployment/" + controllerName, "--timeout=5m"})

	pods := controllerPods(t, ctx, c)
	if len(pods) != 2 {
		t.Fatalf("want 2 controller replicas, got %d", len(pods))
	}
	for _, p := range pods {
		if p.Spec.NodeName != w.KubeletNodes()[0].Name() {
			t.Errorf("controller pod %s on %q, want the kubelet node (never an edge node)", p.Name, p.Spec.NodeName)
		}
		if p.Spec.ServiceAccountName != controllerName {
			t.Errorf("controller pod %s runs as ServiceAccount %q", p.Name, p.Spec.ServiceAccountName)
		}
		if !podReady(&p) {
			t.Errorf("controller pod %s not Ready", p.Name)
		}
	}
	leader := waitLeader(t, ctx, c, "", 2*time.Minute)
	t.Logf("leader: %s", leader)

	// One verb taken from the controller's Role: the operator sees the
	// refusal on the job, naming what was refused. (First: a node the job
	// would upgrade is needed, and the real job below upgrades it.)
	t.Run("RBAC verb removed", func(t *testing.T) { rbacVerbRemoved(t, ctx, w, edge) })

	// A real upgrade, and the leader deleted in the middle of it.
	before := snapshot(t, ctx, w, edge)
	creations := watchUpgradePods(t, ctx, w)
	jw := watchJob(ctx, c, "incluster")
	defer jw.stop()
	// The memory check, not the disk's: this controller runs with the
	// README's thresholds, and the machine's disk is the host's (see
	// kubeedgeworld.WorldDiskThreshold), which CI's parallel worlds fill.
	if err := c.Create(ctx, newJob("incluster", toVersion, []string{edge.Name()}, 1, []string{v1alpha1.CheckItemMem})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, time.Minute, "the upgrade pod", func() bool { return len(upgradePods(ctx, w, edge.Name())) > 0 })
	if err := c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: controllerNS, Name: leader}}); err != nil {
		t.Fatalf("delete the leader: %v", err)
	}
	next := waitLeader(t, ctx, c, leader, 2*time.Minute)
	t.Logf("leader %s deleted mid-upgrade; %s took over", leader, next)
	job := jw.waitFinal(t, ctx, jobTimeout)
	if job.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("job %s: %+v", job.Status.State, job.Status)
	}
	after := snapshot(t, ctx, w, edge)
	if !strings.HasSuffix(after.kubelet, "kubeedge-"+toVersion) || !after.ready {
		t.Errorf("node at %q ready=%v after the job", after.kubelet, after.ready)
	}
	if got := len(after.starts) - len(before.starts); got != 1 {
		t.Errorf("edgecore started %d times during the job, want 1 (upgraded exactly once)", got)
		logEdgecoreJournal(t, ctx, edge, before.starts)
	}
	if n := creations(); n != 1 {
		t.Errorf("%d upgrade pods created for %s, want 1", n, edge.Name())
	}

	// Metrics through the Service, as Prometheus reaches them. The Service
	// spreads scrapes over both replicas; only the leader has written
	// status, so scrape until its non-zero count shows.
	leaderSeen := false
	for i := 0; i < 30 && !leaderSeen; i++ {
		res := w.Cluster.Kubectl(ctx, "get", "--raw", "/api/v1/namespaces/"+controllerNS+"/services/"+controllerName+"-metrics:http-metrics/proxy/metrics")
		if res.Err != nil {
			t.Fatalf("scrape metrics through the Service: %v", res)
		}
		writes := metricValue(res.Stdout, "nodeupgrade_status_writes_total")
		if writes == "" {
			t.Fatalf("metrics through the Service lack nodeupgrade_status_writes_total:\n%s", res.Stdout)
		}
		leaderSeen = writes != "0"
	}
	if !leaderSeen {
		t.Error("30 scrapes through the Service never reached the leader (status writes > 0)")
	}

	// Garbage collection is real here: a job deleted with foreground
	// cascading mid-upgrade waits for its pods, which carry the controller's
	// tracking finalizer and blockOwnerDeletion. Nothing may be left, and
	// the node must come back on its version.
	t.Run("foreground deletion of a running job", func(t *testing.T) { foregroundDeletion(t, ctx, w, edge) })

	// Uninstall as the README says: jobs first (their cleanup finalizer
	// needs the controller), then everything else; nothing may remain.
	for _, argv := range readmeUninstall(t) {
		runFromRepo(t, ctx, w, argv)
	}
	waitFor(t, ctx, 3*time.Minute, "the namespace and the CRD to go", func() bool {
		ns := &corev1.Namespace{}
		nsErr := c.Get(ctx, client.ObjectKey{Name: controllerNS}, ns)
		crd := w.Cluster.Kubectl(ctx, "get", "crd", "nodeupgradejobs.operations.kubeedge.io")
		return apierrors.IsNotFound(nsErr) && crd.Err != nil
	})
	for _, kind := range []string{"clusterrole", "clusterrolebinding"} {
		res := w.Cluster.Kubectl(ctx, "get", kind, "-o", "name")
		if strings.Contains(res.Stdout, "nodeupgrade") {
			t.Errorf("left behind after uninstall: %s", res.Stdout)
		}
	}
	res := w.Cluster.Kubectl(ctx, "get", "role,rolebinding", "-n", "default", "-o", "name")
	if strings.Contains(res.Stdout, "nodeupgrade") {
		t.Errorf("left behind in default after uninstall: %s", res.Stdout)
	}
}

// runFromRepo runs a README kubectl command from the repository's root, as
// a user who cloned it does.
func runFromRepo(t *testing.T, ctx context.Context, w *kubeedgeworld.World, argv []string) {
	t.Helper()
	cmd := w.Cluster.KubectlCommand(ctx, argv[1:]...)
	cmd.Dir = testenv.RepoRoot()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	t.Logf("$ %s  (%s)\n%s", strings.Join(argv, " "), time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(string(out)))
}

// readmeCommands returns the kubectl commands of the README's code blocks
// under heading, in order, as argv; skip drops lines containing it.
func readmeCommands(t *testing.T, heading string, skip ...string) [][]string {
	t.Helper()
	return readmeToolCommands(t, heading, []string{"kubectl"}, skip...)
}

// readmeToolCommands is readmeCommands for the commands of tools.
func readmeToolCommands(t *testing.T, heading string, tools []string, skip ...string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	in, block := false, false
	sc := bufio.NewScanner(f)
lines:
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			in = strings.TrimLeft(line, "# ") == heading
			continue
		case in && strings.HasPrefix(line, "```"):
			block = !block // every code block of the section, in order
			continue
		}
		if !in || !block {
			continue
		}
		cmd, _, _ := strings.Cut(line, "#")
		argv := strings.Fields(cmd)
		if len(argv) == 0 || !contains(tools, argv[0]) {
			continue
		}
		for _, s := range skip {
			if strings.Contains(cmd, s) {
				continue lines
			}
		}
		out = append(out, argv)
	}
	if len(out) == 0 {
		t.Fatalf("README.md: no %v commands under %q", tools, heading)
	}
	return out
}

// readmeInstall is the install section without its example job and watch.
func readmeInstall(t *testing.T) [][]string {
	return readmeCommands(t, "Install on a cluster", "config/samples", " -w")
}

func readmeUninstall(t *testing.T) [][]string { return readmeCommands(t, "Uninstall") }

func controllerPods(t *testing.T, ctx context.Context, c client.Client) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := c.List(ctx, list, client.InNamespace(controllerNS), client.MatchingLabels{"app.kubernetes.io/component": "controller"}); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitLeader waits until the Lease names a running controller pod other
// than not, and returns that pod's name.
func waitLeader(t *testing.T, ctx context.Context, c client.Client, not string, timeout time.Duration) string {
	t.Helper()
	var holder string
	waitFor(t, ctx, timeout, "a leader", func() bool {
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: controllerNS, Name: controllerName}, lease); err != nil || lease.Spec.HolderIdentity == nil {
			return false
		}
		// controller-runtime's identity is <hostname>_<uuid>; the hostname
		// is the pod's name.
		name, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
		for _, p := range controllerPods(t, ctx, c) {
			if p.Name == name && name != not {
				holder = name
				return true
			}
		}
		return false
	})
	return holder
}

// watchUpgradePods counts the upgrade pods created, from a watch.
func watchUpgradePods(t *testing.T, ctx context.Context, w *kubeedgeworld.World) func() int {
	t.Helper()
	wi, err := w.Cluster.Clientset.CoreV1().Pods(podNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelJob})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wi.Stop)
	seen := map[string]bool{}
	added := make(chan string, 100)
	go func() {
		for ev := range wi.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				added <- p.Name
			}
		}
	}()
	return func() int {
		for {
			select {
			case name := <-added:
				seen[name] = true
			default:
				return len(seen)
			}
		}
	}
}

// rbacVerbRemoved takes `create` on pods from the controller's Role and
// starts a job: no pod may appear, and the job's events must say what the
// API server refused. Then the Role is restored and the job deleted.
func rbacVerbRemoved(t *testing.T, ctx context.Context, w *kubeedgeworld.World, edge *kubeedgeworld.Node) {
	c := w.Cluster.Client
	role := &rbacv1.Role{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: controllerNS, Name: controllerName}, role); err != nil {
		t.Fatal(err)
	}
	original := role.DeepCopy()
	for i, r := range role.Rules {
		if contains(r.Resources, "pods") {
			var verbs []string
			for _, v := range r.Verbs {
				if v != "create" {
					verbs = append(verbs, v)
				}
			}
			role.Rules[i].Verbs = verbs
		}
	}
	if err := c.Update(ctx, role); err != nil {
		t.Fatal(err)
	}
	defer func() {
		restored := &rbacv1.Role{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: controllerNS, Name: controllerName}, restored); err == nil {
			restored.Rules = original.Rules
			if err := c.Update(ctx, restored); err != nil {
				t.Errorf("restore the Role: %v", err)
			}
		}
	}()
	job := newJob("rbac-refused", toVersion, []string{edge.Name()}, 1, nil)
	if err := c.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	var message string
	waitFor(t, ctx, 2*time.Minute, "a PodCreateFailed event naming the refusal", func() bool {
		res := w.Cluster.Kubectl(ctx, "get", "events", "-n", "default", "--field-selector", "involvedObject.name=rbac-refused,reason=PodCreateFailed", "-o", "jsonpath={.items[*].message}")
		message = res.Stdout
		return strings.Contains(message, "forbidden") && strings.Contains(message, `cannot create resource "pods"`)
	})
	t.Logf("the operator sees (kubectl get events): %s", firstLineOf(message))
	if pods := upgradePods(ctx, w, edge.Name()); len(pods) != 0 {
		t.Errorf("an upgrade pod exists although its create was refused: %s", pods[0].Name)
	}
	desc := w.Cluster.Kubectl(ctx, "describe", "nodeupgradejob", "rbac-refused")
	if !strings.Contains(desc.Stdout, "PodCreateFailed") {
		t.Errorf("kubectl describe does not show the refusal:\n%s", desc.Stdout)
	}
	if err := c.Delete(ctx, job); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, time.Minute, "the refused job to go", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(job), &v1alpha1.NodeUpgradeJob{}))
	})
}

// metricValue is the value of an unlabelled metric in a Prometheus text
// exposition, "" when absent.
func metricValue(exposition, name string) string {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// foregroundDeletion starts an upgrade to the broken package and deletes
// the job with --cascade=foreground once its pod runs.
func foregroundDeletion(t *testing.T, ctx context.Context, w *kubeedgeworld.World, edge *kubeedgeworld.Node) {
	c := w.Cluster.Client
	if err := c.Create(ctx, newJob("foreground", kubeedgeworld.BrokenVersion, []string{edge.Name()}, 1, nil)); err != nil {
		t.Fatal(err)
	}
	jw := watchJob(ctx, c, "foreground")
	defer jw.stop()
	defer func() {
		if t.Failed() {
			job, states, nodes := jw.snapshot()
			t.Logf("job foreground: states %v, nodes %v, status %+v", states, nodes, job.Status)
			jw.mu.Lock()
			t.Logf("pods seen:\n%s", strings.Join(jw.podLines, "\n"))
			jw.mu.Unlock()
			// Who holds the deletion: the controller's cleanup finalizer on
			// the job, the pod's tracking finalizer, or a kubelet that has
			// not confirmed the pod's deletion.
			live := &v1alpha1.NodeUpgradeJob{}
			if err := c.Get(context.Background(), client.ObjectKey{Name: "foreground"}, live); err == nil {
				t.Logf("job foreground now: deletionTimestamp %v, finalizers %v", live.DeletionTimestamp, live.Finalizers)
			}
			for _, p := range upgradePods(context.Background(), w, edge.Name()) {
				t.Logf("pod %s now: phase %s, deletionTimestamp %v, finalizers %v, owners %v", p.Name, p.Status.Phase,
					p.DeletionTimestamp, p.Finalizers, p.OwnerReferences)
			}
		}
	}()
	// Running, as the API says or as the machine shows: from a v1.22.0 node
	// edgecore's kubelet, restarted by the upgrade, may report no Running
	// status at all before the rollback ends (measured: Pending, then the
	// upgrade container's exit 3), so the runner's processes on the machine
	// (their argv holds the job's UID) count too.
	waitFor(t, ctx, 2*time.Minute, "the upgrade pod to run", func() bool {
		for _, p := range upgradePods(ctx, w, edge.Name()) {
			for _, ref := range p.OwnerReferences {
				if ref.Name != "foreground" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
					continue
				}
				if p.Status.Phase == corev1.PodRunning {
					return true
				}
				if res := edge.Exec(ctx, "pgrep", "-f", string(ref.UID)); strings.TrimSpace(res.Stdout) != "" {
					return true
				}
			}
		}
		return false
	})
	start := time.Now()
	if res := w.Cluster.Kubectl(ctx, "delete", "nodeupgradejob", "foreground", "--cascade=foreground", "--wait", "--timeout=3m"); res.Err != nil {
		t.Fatalf("foreground delete: %v", res)
	}
	t.Logf("job deleted with --cascade=foreground in %s", time.Since(start).Round(100*time.Millisecond))
	waitFor(t, ctx, 3*time.Minute, "no upgrade pod left", func() bool { return len(upgradePods(ctx, w, edge.Name())) == 0 })
	// The runner rolls the node back after its pod is gone (real edgecore
	// confirms the deletion at once): wait for the node to be itself again.
	waitFor(t, ctx, 3*time.Minute, "edge-1 Ready on "+toVersion+" with edgecore active and no keadm lock", func() bool {
		s := snapshot(t, ctx, w, edge)
		return s.ready && strings.HasSuffix(s.kubelet, "kubeedge-"+toVersion) && s.state.ActiveState == "active" && !s.lockFile
	})
	t.Logf("node back on %s, Ready, %s after the delete", toVersion, time.Since(start).Round(time.Second))
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
