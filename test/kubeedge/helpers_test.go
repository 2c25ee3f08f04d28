//go:build kubeedge

// Package kubeedge holds the scenario tests that run the REAL
// nodeupgrade-controller against REAL KubeEdge (test/kubeedgeworld): real
// cloudcore, real edgecore (v1.22.0 by default, v1.20.0 to v1.22.0 in the
// version matrix) as a systemd service on systemd-nspawn machines, real
// keadm. Every assertion reads the real Node, the real pod
// and the real files and journal on the machine. Run with `make
// test-kubeedge` (root; behind the kubeedge build tag).
package kubeedge

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

const podNamespace = localcluster.DefaultNamespace

// jobWatch polls a job's status and records every state it showed, for the
// job and per node.
type jobWatch struct {
	mu         sync.Mutex
	jobStates  []string
	nodeStates map[string][]string
	last       v1alpha1.NodeUpgradeJob
	// podLines is every distinct container-status line the upgrade pods
	// showed, in order: what edgecore's kubelet reported, for the log.
	podLines []string
	podKeys  []string
	// images is, per container name of the upgrade pods, each distinct
	// "spec image -> status imageID" the kubelet reported: which image the
	// controller asked for and which one the node's runtime ran.
	images map[string][]string
	cancel context.CancelFunc
	done   chan struct{}
}

func watchJob(ctx context.Context, c client.Client, name string) *jobWatch {
	ctx, cancel := context.WithCancel(ctx)
	jw := &jobWatch{nodeStates: map[string][]string{}, images: map[string][]string{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(jw.done)
		for {
			job := &v1alpha1.NodeUpgradeJob{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, job); err == nil {
				jw.mu.Lock()
				jw.last = *job
				jw.jobStates = appendNew(jw.jobStates, job.Status.State)
				for _, ns := range job.Status.NodeStatus {
					jw.nodeStates[ns.NodeName] = appendNew(jw.nodeStates[ns.NodeName], ns.State)
				}
				jw.mu.Unlock()
			}
			pods := &corev1.PodList{}
			if err := c.List(ctx, pods, client.InNamespace(podNamespace)); err == nil {
				jw.mu.Lock()
				for i := range pods.Items {
					line := podLine(&pods.Items[i])
					if !contains(jw.podKeys, line) {
						jw.podKeys = append(jw.podKeys, line)
						jw.podLines = append(jw.podLines, time.Now().Format("15:04:05.000")+" "+line)
					}
					jw.recordImages(&pods.Items[i])
				}
				jw.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return jw
}

// sawPod reports whether the watcher saw a pod of that name.
func (jw *jobWatch) sawPod(name string) bool {
	jw.mu.Lock()
	defer jw.mu.Unlock()
	for _, line := range jw.podKeys {
		if strings.HasPrefix(line, name+" ") {
			return true
		}
	}
	return false
}

// podLine is a pod's containers as "name:state[:ready][#restarts]".
func podLine(p *corev1.Pod) string {
	parts := []string{p.Name, string(p.Status.Phase)}
	for _, st := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		state := "waiting"
		switch {
		case st.State.Running != nil:
			state = "running"
		case st.State.Terminated != nil:
			state = fmt.Sprintf("exit%d", st.State.Terminated.ExitCode)
		}
		if st.Ready {
			state += ":ready"
		}
		if st.RestartCount > 0 {
			state += fmt.Sprintf("#%d", st.RestartCount)
		}
		parts = append(parts, st.Name+"="+state)
	}
	return strings.Join(parts, " ")
}

// recordImages keeps each container's spec image and, once the kubelet
// reports it, the image ID its runtime ran. Called with jw.mu held.
func (jw *jobWatch) recordImages(p *corev1.Pod) {
	specImages := map[string]string{}
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		specImages[c.Name] = c.Image
	}
	for _, st := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if st.ImageID == "" {
			continue
		}
		entry := specImages[st.Name] + " -> " + st.ImageID
		if !contains(jw.images[st.Name], entry) {
			jw.images[st.Name] = append(jw.images[st.Name], entry)
		}
	}
}

// containerImages is what recordImages kept for one container name.
func (jw *jobWatch) containerImages(name string) []string {
	jw.mu.Lock()
	defer jw.mu.Unlock()
	return append([]string(nil), jw.images[name]...)
}

func appendNew(list []string, s string) []string {
	if s == "" || (len(list) > 0 && list[len(list)-1] == s) {
		return list
	}
	return append(list, s)
}

func (jw *jobWatch) stop() { jw.cancel(); <-jw.done }

func (jw *jobWatch) snapshot() (v1alpha1.NodeUpgradeJob, []string, map[string][]string) {
	jw.mu.Lock()
	defer jw.mu.Unlock()
	ns := map[string][]string{}
	for k, v := range jw.nodeStates {
		ns[k] = append([]string(nil), v...)
	}
	return *jw.last.DeepCopy(), append([]string(nil), jw.jobStates...), ns
}

// waitFinal waits until the job is Successful or Failed.
func (jw *jobWatch) waitFinal(t *testing.T, ctx context.Context, timeout time.Duration) v1alpha1.NodeUpgradeJob {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		job, states, nodes := jw.snapshot()
		if job.Status.State == v1alpha1.StateSuccessful || job.Status.State == v1alpha1.StateFailed {
			t.Logf("job %s final: %s (job states %v, node states %v)", job.Name, job.Status.State, states, nodes)
			jw.mu.Lock()
			t.Logf("upgrade pods as reported (first time seen):\n%s", strings.Join(jw.podLines, "\n"))
			jw.mu.Unlock()
			return job
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("job %s not final after %s: status %+v, states %v, node states %v", job.Name, timeout, job.Status, states, nodes)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func newJob(name, version string, nodes []string, concurrency int32, checks []string) *v1alpha1.NodeUpgradeJob {
	return &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.NodeUpgradeJobSpec{
			Version:        version,
			Image:          kubeedgeworld.InstallPackageRepo,
			NodeNames:      nodes,
			Concurrency:    concurrency,
			TimeoutSeconds: 900,
			CheckItems:     checks,
		},
	}
}

// nodeSnapshot is what the machine itself says about its edgecore.
type nodeSnapshot struct {
	starts   []time.Time
	state    kubeedgeworld.EdgecoreState
	binSum   string
	kubelet  string
	ready    bool
	lockFile bool
}

func snapshot(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node) nodeSnapshot {
	t.Helper()
	var s nodeSnapshot
	var err error
	if s.starts, err = n.EdgecoreStarts(ctx); err != nil {
		t.Fatalf("node %s journal: %v", n.Name(), err)
	}
	if s.state, err = n.Edgecore(ctx); err != nil {
		t.Fatalf("node %s systemctl: %v", n.Name(), err)
	}
	s.binSum = fileSum(t, n.HostPath("/usr/local/bin/edgecore"))
	node, err := w.Cluster.Clientset.CoreV1().Nodes().Get(ctx, n.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", n.Name(), err)
	}
	s.kubelet = node.Status.NodeInfo.KubeletVersion
	s.ready = kubeedgeworld.NodeReady(node)
	_, err = os.Stat(n.HostPath("/etc/kubeedge/idempotency_record"))
	s.lockFile = err == nil
	return s
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

// keadmReport is /etc/kubeedge/upgrade_report.json, as keadm writes it.
type keadmReport struct {
	Event        string `json:"event"`
	Success      bool   `json:"success"`
	FromVersion  string `json:"fromVersion"`
	ToVersion    string `json:"toVersion"`
	ErrorMessage string `json:"errorMessage"`
}

func readReport(n *kubeedgeworld.Node) (keadmReport, string, error) {
	data, err := n.ReadFile("/etc/kubeedge/upgrade_report.json")
	if err != nil {
		return keadmReport{}, "", err
	}
	var r keadmReport
	err = json.Unmarshal(data, &r)
	return r, string(data), err
}

// waitPodsGone waits until no upgrade pod for the node exists.
func waitPodsGone(t *testing.T, ctx context.Context, w *kubeedgeworld.World, node string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods, err := w.Cluster.Clientset.CoreV1().Pods(podNamespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelNode + "=" + node})
		if err == nil && len(pods.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			names := []string{}
			if pods != nil {
				for _, p := range pods.Items {
					names = append(names, p.Name+"("+string(p.Status.Phase)+")")
				}
			}
			t.Fatalf("upgrade pods of %s still there after %s: %v %v", node, timeout, names, err)
		}
		time.Sleep(time.Second)
	}
}

// waitPodsKept waits until the node's upgrade pod has ended and the
// controller has recorded its outcome (tracking finalizer released): a
// failed node's pod is kept, for its logs, until the job is deleted.
func waitPodsKept(t *testing.T, ctx context.Context, w *kubeedgeworld.World, node string, timeout time.Duration) corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods := upgradePods(ctx, w, node)
		if len(pods) == 1 && !slices.Contains(pods[0].Finalizers, v1alpha1.FinalizerPodTracking) &&
			(pods[0].Status.Phase == corev1.PodFailed || pods[0].Status.Phase == corev1.PodSucceeded) {
			return pods[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("upgrade pod of %s not ended and released after %s: %d pods", node, timeout, len(pods))
		}
		time.Sleep(time.Second)
	}
}

// upgradePods lists the node's upgrade pods.
func upgradePods(ctx context.Context, w *kubeedgeworld.World, node string) []corev1.Pod {
	pods, err := w.Cluster.Clientset.CoreV1().Pods(podNamespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelNode + "=" + node})
	if err != nil {
		return nil
	}
	return pods.Items
}

// containerdLines returns the node's containerd journal lines holding all
// of the words, with their unix times.
func containerdLines(ctx context.Context, n *kubeedgeworld.Node, words ...string) []timedLine {
	res := n.Exec(ctx, "journalctl", "--no-pager", "-o", "short-unix", "-u", "containerd")
	var out []timedLine
	for _, line := range strings.Split(res.Stdout, "\n") {
		ok := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		var sec float64
		if len(f) == 0 {
			continue
		}
		if _, err := fmt.Sscanf(f[0], "%f", &sec); err != nil {
			continue
		}
		out = append(out, timedLine{at: time.UnixMicro(int64(sec * 1e6)), line: line})
	}
	return out
}

type timedLine struct {
	at   time.Time
	line string
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// logEdgecoreJournal logs the node's edgecore journal since the last start
// in before (all of it when none): why edgecore started more often than a
// test expected (a crash, a restart by systemd, a second upgrade).
func logEdgecoreJournal(t *testing.T, ctx context.Context, n *kubeedgeworld.Node, before []time.Time) {
	t.Helper()
	since := "@0"
	if len(before) > 0 {
		since = fmt.Sprintf("@%d", before[len(before)-1].Unix())
	}
	res := n.Exec(ctx, "journalctl", "--no-pager", "-o", "short-precise", "-u", "edgecore.service", "--since", since)
	lines := strings.Split(res.Stdout, "\n")
	var kept []string
	for _, l := range lines {
		// The unit's own lines and edgecore's errors say why it started.
		if strings.Contains(l, "systemd[") || strings.Contains(l, " E1") || strings.Contains(l, " F1") || strings.Contains(l, "panic") {
			kept = append(kept, l)
		}
	}
	t.Logf("edgecore journal of %s since %s (%d of %d lines: systemd's, errors):\n%s", n.Name(), since, len(kept), len(lines),
		strings.Join(kept[max(0, len(kept)-80):], "\n"))
}
