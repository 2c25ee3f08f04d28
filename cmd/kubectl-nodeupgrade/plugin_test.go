package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/pkg/jobinput"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// now is the tests' clock: every age, deadline and ETA is relative to it.
var now = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// node builds a Node as KWOK shows a KubeEdge edge node.
func node(name, edgecore string, edge, ready bool) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	if edge {
		n.Labels[controller.DefaultEdgeNodeLabel] = ""
	}
	n.Status.NodeInfo.KubeletVersion = "v1.30.7-kubeedge-" + edgecore
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
	return n
}

func planFixture() (*v1alpha1.NodeUpgradeJob, []corev1.Node, []corev1.Pod) {
	job := &v1alpha1.NodeUpgradeJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeUpgradeJob"},
		ObjectMeta: metav1.ObjectMeta{Name: "fleet-upgrade"},
		Spec: v1alpha1.NodeUpgradeJobSpec{
			// Out of order and with a duplicate: the controller sorts and dedups.
			NodeNames: []string{"edge-e", "edge-a", "edge-b", "edge-c", "edge-d", "edge-a", "cloud-1",
				"typo-node", "edge-current", "edge-offline", "edge-busy"},
			Version: "v1.21.0", Concurrency: 2, TimeoutSeconds: 120, FailureTolerate: "0.2",
		},
	}
	nodes := []corev1.Node{
		node("edge-a", "v1.20.0", true, true), node("edge-b", "v1.19.3", true, true),
		node("edge-c", "v1.20.0", true, true), node("edge-d", "v1.20.0", true, true),
		node("edge-e", "v1.20.0", true, true), node("cloud-1", "v1.20.0", false, true),
		node("edge-current", "v1.21.0", true, true), node("edge-offline", "v1.20.0", true, false),
		node("edge-busy", "v1.20.0", true, true), node("not-selected", "v1.20.0", true, true),
	}
	busy := corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name:        upgradepod.PodName("edge-busy"),
		Labels:      map[string]string{v1alpha1.LabelJob: "older-job", v1alpha1.LabelNode: "edge-busy"},
		Annotations: map[string]string{v1alpha1.AnnotationNode: "edge-busy"},
	}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	return job, nodes, []corev1.Pod{busy}
}

func TestPlan(t *testing.T) {
	job, nodes, pods := planFixture()
	report := planJob(job, nodes, pods, jobinput.Policy{EdgeNodeLabel: controller.DefaultEdgeNodeLabel}, now, perNode{d: 90 * time.Second, source: "--per-node"})
	// The waves follow the dispatch order (names sorted) at concurrency 2.
	if got := fmt.Sprint(report.Waves); got != "[[edge-a edge-b] [edge-c edge-d] [edge-e]]" {
		t.Errorf("waves = %s", got)
	}
	actions := map[string]string{}
	for _, n := range report.Nodes {
		actions[n.Name] = n.Action + ": " + n.Reason
	}
	for name, want := range map[string]string{
		"cloud-1":      "skip: skipped: not an edge node (no label node-role.kubernetes.io/edge)",
		"typo-node":    "skip: skipped: node not found",
		"edge-current": "skip: skipped: already at v1.21.0",
		"edge-offline": "defer: deferred: node is NotReady",
		"edge-busy":    "defer: waiting: another upgrade is running on this node (job older-job)",
		"edge-a":       "upgrade: ",
	} {
		if !strings.HasPrefix(actions[name], want) {
			t.Errorf("%s: got %q, want prefix %q", name, actions[name], want)
		}
	}
	if len(report.Nodes) != 10 || report.Estimate.Total != "4m30s" {
		t.Errorf("got %d nodes, estimate %s; want 10 nodes (duplicate dropped, not-selected out) and 3 waves x 90s", len(report.Nodes), report.Estimate.Total)
	}
	for _, format := range []string{"", "json", "yaml"} {
		var out bytes.Buffer
		if err := writePlan(&out, report, format); err != nil {
			t.Fatal(err)
		}
		golden(t, "plan"+map[string]string{"": "", "json": ".json", "yaml": ".yaml"}[format]+".golden", out.String())
	}
}

// A job created paused gets the same plan, said to follow the resume.
func TestPlanSuspended(t *testing.T) {
	job, nodes, pods := planFixture()
	job.Spec.Suspend = true
	report := planJob(job, nodes, pods, jobinput.Policy{EdgeNodeLabel: controller.DefaultEdgeNodeLabel}, now, perNode{d: 90 * time.Second, source: "--per-node"})
	if !report.Suspended || fmt.Sprint(report.Waves) != "[[edge-a edge-b] [edge-c edge-d] [edge-e]]" {
		t.Errorf("suspended %v, waves %v: want the unpaused waves, marked suspended", report.Suspended, report.Waves)
	}
	var out bytes.Buffer
	if err := writePlan(&out, report, ""); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan-suspended.golden", out.String())
}

// A job with a canary and a window in each node's zone: the plan waits
// for the windows and shows the canary's pause. now is 10:00Z on a
// Thursday: 11:00 in Berlin, 19:00 in Tokyo.
func TestPlanWindowsAndCanary(t *testing.T) {
	job, nodes, pods := planFixture()
	one := int32(1)
	job.Spec.Canary = &v1alpha1.Canary{Count: &one, SoakSeconds: 600}
	job.Spec.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{StartTime: "22:00", EndTime: "01:00", TimeZone: "Europe/Berlin"}}
	for i := range nodes {
		if nodes[i].Name == "edge-c" {
			nodes[i].Labels[v1alpha1.LabelTimeZone] = "Asia.Tokyo"
		}
	}
	report := planJob(job, nodes, pods, jobinput.Policy{EdgeNodeLabel: controller.DefaultEdgeNodeLabel}, now, perNode{d: time.Hour, source: "--per-node"})
	// edge-a is the canary, at Berlin's 22:00 (21:00Z): meanwhile Tokyo's
	// window (13:00Z-16:00Z) passed for edge-c, held back as no canary, so
	// it waits for Tokyo's next night. edge-b and edge-d follow the soak,
	// edge-e the hour after, still in Berlin's window (to 00:00Z).
	if got := fmt.Sprint(report.Waves); got != "[[edge-a] [edge-b edge-d] [edge-e] [edge-c]]" {
		t.Errorf("waves = %s", got)
	}
	if got := fmt.Sprint(report.WaveStarts); got != "[2026-12-03T21:00:00Z 2026-12-03T22:10:00Z 2026-12-03T23:10:00Z 2026-12-04T13:00:00Z]" {
		t.Errorf("wave starts = %s", got)
	}
	if len(report.Pauses) != 1 || report.Estimate.Finish != "2026-12-04T14:00:00Z" {
		t.Errorf("pauses %v, finish %s", report.Pauses, report.Estimate.Finish)
	}
	var out bytes.Buffer
	if err := writePlan(&out, report, ""); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan-windows-canary.golden", out.String())
}

func TestPlanRefusedAndAllSkipped(t *testing.T) {
	job, nodes, _ := planFixture()
	job.Spec.NodeNames = []string{"cloud-1", "typo-node"}
	report := planJob(job, nodes, nil, jobinput.Policy{EdgeNodeLabel: controller.DefaultEdgeNodeLabel}, now, timeoutPerNode(2*time.Minute))
	if len(report.Waves) != 0 || !strings.Contains(report.Refusal, "no edge node to upgrade") {
		t.Errorf("waves %v, refusal %q: a job of skipped nodes only fails", report.Waves, report.Refusal)
	}
	var out bytes.Buffer
	if err := writePlan(&out, report, ""); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan-all-skipped.golden", out.String())

	job.Spec.NodeNames, job.Spec.Image = []string{"edge-a"}, "-bad/installation-package"
	report = planJob(job, nodes, nil, jobinput.Policy{EdgeNodeLabel: controller.DefaultEdgeNodeLabel}, now, timeoutPerNode(2*time.Minute))
	if report.Refusal == "" || report.Nodes[0].Action != actionRefuse {
		t.Errorf("an invalid image refuses the job: %+v", report)
	}
}

func TestReadJob(t *testing.T) {
	job, err := readJob("-", strings.NewReader("apiVersion: operations.kubeedge.io/v1alpha1\nkind: NodeUpgradeJob\nmetadata: {name: j}\nspec: {version: v1.21.0, nodeNames: [a], suspend: true}\n"))
	if err != nil || job.Name != "j" || job.Spec.NodeNames[0] != "a" {
		t.Errorf("readJob = %+v, %v", job, err)
	}
	if _, err := readJob("-", strings.NewReader("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")); err == nil || !strings.Contains(err.Error(), "want kind NodeUpgradeJob") {
		t.Errorf("a Pod manifest: %v", err)
	}
}

func TestMeasurePerNode(t *testing.T) {
	finished := func(name string, created time.Time, took time.Duration, concurrency int32, upgraded, skipped int) v1alpha1.NodeUpgradeJob {
		j := v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}}
		j.Spec.Concurrency = concurrency
		j.Status.State, j.Status.Time = v1alpha1.StateSuccessful, created.Add(took).Format(time.RFC3339)
		for i := range upgraded {
			j.Status.NodeStatus = append(j.Status.NodeStatus, v1alpha1.TaskStatus{NodeName: fmt.Sprint(i), State: v1alpha1.StateSuccessful})
		}
		for i := range skipped {
			j.Status.NodeStatus = append(j.Status.NodeStatus, v1alpha1.TaskStatus{NodeName: fmt.Sprint("s", i), State: v1alpha1.StateSuccessful, Reason: "skipped: already at v1.21.0"})
		}
		return j
	}
	t0 := now.Add(-time.Hour)
	jobs := []v1alpha1.NodeUpgradeJob{
		finished("a", t0, 60*time.Second, 2, 4, 3),                    // 2 waves: 30s (skipped nodes take no wave)
		finished("b", t0.Add(time.Minute), 40*time.Second, 1, 2, 0),   // 20s
		finished("c", t0.Add(2*time.Minute), 90*time.Second, 5, 5, 0), // 90s
	}
	running := finished("d", t0, time.Second, 1, 1, 0)
	running.Status.State = v1alpha1.StateUpgrading
	jobs = append(jobs, running)
	if d, n := measurePerNode(jobs); d != 30*time.Second || n != 3 {
		t.Errorf("measurePerNode = %s from %d jobs, want the median 30s from 3", d, n)
	}
	if _, n := measurePerNode(jobs[3:]); n != 0 {
		t.Errorf("a running job is no measure, got %d", n)
	}
}

func TestRetry(t *testing.T) {
	src := statusFixture()
	src.Spec.CheckItems, src.Spec.Image = []string{"cpu", "disk"}, "registry.example/kubeedge/installation-package"
	src.Spec.FailureTolerate = "0.3"
	src.Spec.NodeNames, src.Spec.Suspend = nil, true
	src.Spec.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "a"}}
	src.Status.NodeStatus[7].State = v1alpha1.StateNotAttempted
	name := retryName(src.Name, map[string]bool{"fleet-upgrade-retry-1": true, "fleet-upgrade-retry-3": true})
	if name != "fleet-upgrade-retry-2" {
		t.Errorf("retryName = %s, want the first free N", name)
	}
	job, err := retryJob(src, name)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(job.Spec.NodeNames, " "); got != "edge-c edge-d edge-h" || job.Spec.LabelSelector != nil || job.Spec.Suspend {
		t.Errorf("nodeNames %q, selector %v: want the failed and not-attempted nodes, by name", got, job.Spec.LabelSelector)
	}
	data, err := yaml.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "retry-job.golden", string(data))

	src.Status.NodeStatus = src.Status.NodeStatus[:2]
	if _, err := retryJob(src, name); err == nil || !strings.Contains(err.Error(), "nothing to retry") {
		t.Errorf("a job without failures: %v", err)
	}
}

func TestConfirm(t *testing.T) {
	for answer, want := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "": false, "yep\n": false} {
		var out bytes.Buffer
		got, err := confirm(strings.NewReader(answer), &out, "Create? [y/N]: ")
		if err != nil || got != want || out.String() != "Create? [y/N]: " {
			t.Errorf("confirm(%q) = %v, %v (printed %q), want %v", answer, got, err, out.String(), want)
		}
	}
}

func TestLogs(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "nodeupgrade-system", Name: upgradepod.PodName("edge-c")}}
	pod.Spec.InitContainers = []corev1.Container{{Name: runner.ContainerCopyKeadm}}
	pod.Spec.Containers = []corev1.Container{{Name: runner.ContainerCheck}, {Name: runner.ContainerBackup}, {Name: runner.ContainerUpgrade}}
	var order []string
	open := func(_ context.Context, container string) (io.ReadCloser, error) {
		order = append(order, container)
		if container == runner.ContainerUpgrade {
			return nil, errors.New("container \"upgrade\" in pod is waiting to start: PodInitializing")
		}
		return io.NopCloser(strings.NewReader(container + ": line 1\n" + container + ": line 2\n")), nil
	}
	var out bytes.Buffer
	err := writeLogs(context.Background(), &out, pod, open)
	if got := strings.Join(order, " "); got != "copy-keadm check backup upgrade" {
		t.Errorf("containers read in order %q, want init containers first", got)
	}
	if err == nil || !strings.Contains(err.Error(), "1 of 4 containers") {
		t.Errorf("an unreadable container's log is an error after the others: %v", err)
	}
	golden(t, "logs.golden", out.String())
}

// TestMessages pins the one-line messages of refusals and of pause/resume.
func TestMessages(t *testing.T) {
	gr := schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: "nodeupgradejobs"}
	var out strings.Builder
	for _, err := range []error{
		apiError(apierrors.NewNotFound(gr, "nope"), "get", jobRef("nope")),
		apiError(apierrors.NewForbidden(gr, "j", errors.New(`User "alice" cannot patch resource "nodeupgradejobs" in API group "operations.kubeedge.io" at the cluster scope`)), "patch", jobRef("j")),
		apiError(apierrors.NewUnauthorized("token expired"), "list", "nodes"),
		apiError(apierrors.NewInternalError(errors.New("etcd down")), "list", "nodes"),
		suspendDropped("pause", "j"),
		finishedRefusal("resume", "j", v1alpha1.StateSuccessful),
	} {
		fmt.Fprintln(&out, "error: "+err.Error())
	}
	fmt.Fprint(&out, suspendMessage("j", true), suspendMessage("j", false), suspendUnchanged("j", true), suspendUnchanged("j", false))
	golden(t, "messages.golden", out.String())
	if !strings.Contains(out.String(), `forbidden: cannot patch nodeupgradejob j (`) {
		t.Error("a Forbidden error names what was refused")
	}
}

// TestHistory reads a node's last upgrade as the controller writes it, and
// says so when there is none or it is not a record.
func TestHistory(t *testing.T) {
	n := node("edge-a", "v1.21.0", true, true)
	var out bytes.Buffer
	if err := writeHistory(&out, &n, ""); err != nil || !strings.Contains(out.String(), "no upgrade recorded") {
		t.Errorf("no record: %v %q", err, out.String())
	}
	n.Annotations = map[string]string{v1alpha1.AnnotationLastUpgrade: `{"job":"fleet-upgrade","from":"v1.20.0","to":"v1.21.0","result":"Success","time":"2026-12-03T10:04:00Z"}`}
	out.Reset()
	if err := writeHistory(&out, &n, ""); err != nil {
		t.Fatal(err)
	}
	golden(t, "history.golden", out.String())
	n.Annotations[v1alpha1.AnnotationLastUpgrade] = "not json"
	if err := writeHistory(&out, &n, ""); err == nil || !strings.Contains(err.Error(), v1alpha1.AnnotationLastUpgrade) {
		t.Errorf("a broken record must be an error naming the annotation: %v", err)
	}
}
