//go:build kubeedge

package kubeedge

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestHealthGateRollsBack: a job with a health gate (soak 20 s, and a pod
// selector naming a pod on the node that never gets Ready: its image does
// not exist) upgrades a real node to v1.23.1, which soaks (Verifying) and
// then fails its gate; the controller creates its rollback pod beside its
// upgrade pod, and the rollback pod's container has the job's unit on the host run
// keadm rollback edge from the upgrade's backup. The node ends Failed with
// event Rollback, Ready on v1.22.0 with the v1.22.0 binary, edgecore active,
// keadm's report a successful Rollback.
func TestHealthGateRollsBack(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 1)
	n := w.Nodes()[0]
	before := snapshot(t, ctx, w, n)

	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gate-probe", Namespace: metav1.NamespaceDefault, Labels: map[string]string{"app": "gate-probe"}},
		Spec: corev1.PodSpec{
			NodeName:    n.Name(),
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:  []corev1.Container{{Name: "never", Image: "registry.kubeedgeworld.test:5000/no-such-image:v0"}},
		},
	}
	if err := w.Cluster.Client.Create(ctx, probe); err != nil {
		t.Fatal(err)
	}

	jw := watchJob(ctx, w.Cluster.Client, "gated")
	defer jw.stop()
	job := newJob("gated", toVersion, []string{n.Name()}, 1, nil)
	job.Spec.TimeoutSeconds = 300
	job.Spec.HealthGate = &v1alpha1.HealthGate{SoakSeconds: 20,
		PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gate-probe"}}}
	start := time.Now()
	if err := w.Cluster.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	final0 := jw.waitFinal(t, ctx, jobTimeout)
	job = &final0
	t.Logf("job final %s after %s", job.Status.State, time.Since(start).Round(time.Second))
	_, _, nodeStates := jw.snapshot()
	var final v1alpha1.TaskStatus
	for _, ns := range job.Status.NodeStatus {
		if ns.NodeName == n.Name() {
			final = ns
		}
	}
	t.Logf("node status: %+v; states %v", final, nodeStates[n.Name()])
	if !contains(nodeStates[n.Name()], v1alpha1.StateVerifying) {
		t.Errorf("the node never showed %s: %v", v1alpha1.StateVerifying, nodeStates[n.Name()])
	}
	if final.State != v1alpha1.StateFailed || final.Event != v1alpha1.EventRollback {
		t.Errorf("node %s ended %s/%s, want Failed with event Rollback", n.Name(), final.State, final.Event)
	}
	for _, want := range []string{"health gate failed", "gate-probe", "rollback succeeded"} {
		if !strings.Contains(final.Reason, want) {
			t.Errorf("reason %q does not say %q", final.Reason, want)
		}
	}
	// The rollback pod is deleted once the node is final; the watcher saw it.
	if !jw.sawPod(upgradepod.RollbackPodName(n.Name())) {
		t.Errorf("no rollback pod %s was seen", upgradepod.RollbackPodName(n.Name()))
	}
	pod := &corev1.Pod{}
	if err := w.Cluster.Client.Get(ctx, client.ObjectKey{Namespace: podNamespace, Name: upgradepod.RollbackPodName(n.Name())}, pod); err == nil && pod.DeletionTimestamp == nil {
		t.Errorf("rollback pod %s left after the node failed", pod.Name)
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+fromVersion, n.Name()); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, ctx, w, n)
	if after.binSum != before.binSum {
		t.Errorf("/usr/local/bin/edgecore is not the %s binary after the gate's rollback", fromVersion)
	}
	if after.binSum == fileSumOf(t, kubeedgeworld.BinaryPath(toVersion, "edgecore")) {
		t.Errorf("/usr/local/bin/edgecore is still the %s binary", toVersion)
	}
	if after.state.ActiveState != "active" {
		t.Errorf("edgecore %s after the rollback", after.state.ActiveState)
	}
	if after.lockFile {
		t.Errorf("keadm's lock left behind")
	}
	if r, raw, err := readReport(n); err != nil || r.Event != "Rollback" || !r.Success {
		t.Errorf("keadm's report after the rollback: %s (%v)", raw, err)
	}
	if rec, err := n.ReadFile("/var/lib/nodeupgrade/jobs/" + string(job.UID) + "/rollback.json"); err != nil || !strings.Contains(string(rec), `"rolledBack":true`) {
		t.Errorf("the unit's rollback record: %s (%v)", rec, err)
	}
}
