package upgradepod

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

func waiting(reason, msg string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
}

func exited(code int32, msg string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg, Reason: reasonFor(code)}}
}

func reasonFor(code int32) string {
	if code == 0 {
		return "Completed"
	}
	return "Error"
}

func cs(name string, state corev1.ContainerState) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: state}
}

// testPod is a built pod (with or without check) with the given status.
func testPod(withCheck bool, status corev1.PodStatus) *corev1.Pod {
	p := baseParams()
	if !withCheck {
		p.CheckItems = nil
	}
	pod := Build(p, buildTime)
	pod.Status = status
	return pod
}

const (
	checkFailed = `{"step":"check","result":"failed","reason":"check failed: cpu usage 95.0% >= threshold 80%","fromVersion":"v1.20.0","toVersion":"v1.21.0"}`
	rolledBack  = `{"step":"rollback","result":"failed","reason":"rollback succeeded, the node is back on v1.20.0; upgrade to v1.21.0 failed","fromVersion":"v1.20.0","toVersion":"v1.21.0","rolledBack":true}`
	upgraded    = `{"step":"upgrade","result":"succeeded","reason":"upgraded edgecore from v1.20.0 to v1.21.0\nmore","fromVersion":"v1.20.0","toVersion":"v1.21.0"}`
	deadline    = `{"step":"backup","result":"failed","reason":"deadline 2030-01-02T03:09:05Z passed before step backup started (now 2030-01-02T03:09:06Z); nothing was run"}`
)

// steps is the status of the step containers of a pod with check.
func steps(check, backup, upgrade corev1.ContainerState) []corev1.ContainerStatus {
	return []corev1.ContainerStatus{cs(runner.ContainerCheck, check), cs(runner.ContainerBackup, backup), cs(runner.ContainerUpgrade, upgrade)}
}

const notRun = `{"step":"upgrade","result":"failed","reason":"not run: step backup failed (exit 2)"}`

func TestView(t *testing.T) {
	copied := []corev1.ContainerStatus{cs(runner.ContainerCopyKeadm, exited(0, ""))}
	creating := waiting("ContainerCreating", "")
	ok := exited(0, "{}")
	tests := []struct {
		name       string
		pod        *corev1.Pod
		wantPhase  rollout.PodPhase
		wantReport *runner.Report
		wantReason []string // substrings; nil means Reason must be empty
		wantDelete bool
	}{
		{"nil pod", nil, rollout.PodPending, nil, nil, false},
		{"empty pod", &corev1.Pod{}, rollout.PodPending, nil, nil, false},
		{"created, no status", testPod(true, corev1.PodStatus{}), rollout.PodPending, nil, nil, false},
		{"pending, statuses waiting", testPod(true, corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{cs(runner.ContainerCopyKeadm, waiting("PodInitializing", ""))},
			ContainerStatuses:     steps(waiting("PodInitializing", ""), waiting("PodInitializing", ""), waiting("PodInitializing", "")),
		}), rollout.PodPending, nil, nil, false},
		{"install image cannot be pulled", testPod(true, corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerCopyKeadm, waiting("ImagePullBackOff", "Back-off pulling image")),
		}}), rollout.PodPending, nil, []string{"copy-keadm: cannot pull docker.io/kubeedge/installation-package:v1.21.0: back-off (Back-off pulling image)"}, false},
		{"copying keadm before check", testPod(true, corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerCopyKeadm, running()),
		}}), rollout.PodChecking, nil, nil, false},
		{"copying keadm without check", testPod(false, corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerCopyKeadm, running()),
		}}), rollout.PodBackingUp, nil, nil, false},
		{"steps being created", testPod(true, corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: copied,
			ContainerStatuses: steps(creating, creating, creating),
		}), rollout.PodChecking, nil, nil, false},
		{"checking, the later steps waiting for it", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(running(), running(), running()),
		}), rollout.PodChecking, nil, nil, false},
		{"backing up", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, running(), running()),
		}), rollout.PodBackingUp, nil, nil, false},
		{"backing up without check", testPod(false, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: []corev1.ContainerStatus{cs(runner.ContainerBackup, running()), cs(runner.ContainerUpgrade, running())},
		}), rollout.PodBackingUp, nil, nil, false},
		{"statuses out of order", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied, ContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerUpgrade, running()), cs(runner.ContainerBackup, running()), cs(runner.ContainerCheck, ok),
		}}), rollout.PodBackingUp, nil, nil, false},
		{"upgrading", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, running()),
		}), rollout.PodUpgrading, nil, nil, false},
		{"upgrade container not started yet", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, creating),
		}), rollout.PodUpgrading, nil, nil, false},
		// A Ready upgrade container is no sign of a rollback: real edgecore's
		// kubelet reports Ready by default while it has no probe worker.
		{"upgrade container Ready", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied, ContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerCheck, ok), cs(runner.ContainerBackup, ok), {Name: runner.ContainerUpgrade, State: running(), Ready: true},
		}}), rollout.PodUpgrading, nil, nil, false},
		{"succeeded", testPod(true, corev1.PodStatus{Phase: corev1.PodSucceeded, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, exited(0, upgraded)),
		}), rollout.PodSucceeded, &runner.Report{Step: runner.StepUpgrade, Result: runner.ResultSucceeded, Reason: "upgraded edgecore from v1.20.0 to v1.21.0\nmore", FromVersion: "v1.20.0", ToVersion: "v1.21.0"},
			[]string{"upgraded edgecore from v1.20.0 to v1.21.0"}, false},
		{"all steps exited 0, pod phase lags", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, exited(0, upgraded)),
		}), rollout.PodSucceeded, &runner.Report{Step: runner.StepUpgrade, Result: runner.ResultSucceeded, Reason: "upgraded edgecore from v1.20.0 to v1.21.0\nmore", FromVersion: "v1.20.0", ToVersion: "v1.21.0"},
			[]string{"upgraded"}, false},
		{"succeeded, garbage message", testPod(true, corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerUpgrade, exited(0, "some log line\n")),
		}}), rollout.PodSucceeded, nil, nil, false},
		{"succeeded, no statuses", testPod(true, corev1.PodStatus{Phase: corev1.PodSucceeded}), rollout.PodSucceeded, nil, nil, false},
		{"check failed with report, the later steps not run", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(exited(1, checkFailed), exited(9, notRun), exited(9, notRun)),
		}), rollout.PodFailed, &runner.Report{Step: runner.StepCheck, Result: runner.ResultFailed, Reason: "check failed: cpu usage 95.0% >= threshold 80%", FromVersion: "v1.20.0", ToVersion: "v1.21.0"},
			[]string{"cpu usage 95.0% >= threshold 80%"}, false},
		{"check failed, pod phase lags", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(exited(1, checkFailed), running(), running()),
		}), rollout.PodFailed, &runner.Report{Step: runner.StepCheck, Result: runner.ResultFailed, Reason: "check failed: cpu usage 95.0% >= threshold 80%", FromVersion: "v1.20.0", ToVersion: "v1.21.0"},
			[]string{"cpu usage"}, false},
		{"copy-keadm failed with log fallback", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerCopyKeadm, exited(1, "cp: can't stat '/usr/local/bin/keadm': No such file or directory\n")),
		}}), rollout.PodFailed, nil, []string{"container copy-keadm exited 1: cp: can't stat"}, false},
		{"copy-keadm run again after the steps started does not fail the node", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning,
			InitContainerStatuses: []corev1.ContainerStatus{cs(runner.ContainerCopyKeadm, exited(1, "cp: can't create '/nodeupgrade-bin/keadm': Text file busy"))},
			ContainerStatuses:     steps(ok, ok, running()),
		}), rollout.PodUpgrading, nil, nil, false},
		{"backup failed, empty message", testPod(false, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied, ContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerBackup, exited(2, "")), cs(runner.ContainerUpgrade, exited(9, notRun)),
		}}), rollout.PodFailed, nil, []string{"container backup exited 2 (backup failed): Error"}, false},
		{"backup failed, garbage json", testPod(false, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied, ContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerBackup, exited(2, `{"step":"backup","res`)),
		}}), rollout.PodFailed, nil, []string{`container backup exited 2 (backup failed): {"step":"backup","res`}, false},
		{"deadline passed before backup", testPod(false, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied, ContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerBackup, exited(5, deadline)),
		}}), rollout.PodFailed, &runner.Report{Step: runner.StepBackup, Result: runner.ResultFailed, Reason: "deadline 2030-01-02T03:09:05Z passed before step backup started (now 2030-01-02T03:09:06Z); nothing was run"},
			[]string{"passed before step backup started"}, false},
		{"upgrade failed and rolled back", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, exited(3, rolledBack)),
		}), rollout.PodFailed, &runner.Report{Step: runner.StepRollback, Result: runner.ResultFailed, Reason: "rollback succeeded, the node is back on v1.20.0; upgrade to v1.21.0 failed", FromVersion: "v1.20.0", ToVersion: "v1.21.0", RolledBack: true},
			[]string{"back on v1.20.0"}, false},
		{"upgrade failed before edgecore was touched", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, exited(8, "")),
		}), rollout.PodFailed, nil, []string{"exited 8 (upgrade failed before edgecore was touched, nothing to roll back)"}, false},
		{"node not supported", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, exited(7, ""), exited(9, "")),
		}), rollout.PodFailed, nil, []string{"container backup exited 7 (the node or its keadm is not supported, nothing was done)"}, false},
		// The upgrade runs in the job's unit on the node: a follower
		// killed is no verdict, the Node shows the outcome.
		{"upgrade follower killed without report", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}),
		}), rollout.PodDetached, nil, []string{"ended before the node's upgrade unit reported", "container upgrade exited 137 (killed)", "the unit goes on"}, false},
		{"both followers killed", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, exited(143, ""), exited(137, "")),
		}), rollout.PodDetached, nil, []string{"container backup exited 143 (terminated)", "container upgrade exited 137 (killed)"}, false},
		{"follower stopped following", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, exited(runner.ExitDetached, `{"step":"upgrade","result":"failed","reason":"stopped following the upgrade on the node","detached":true}`)),
		}), rollout.PodDetached, nil, []string{"container upgrade: stopped following the upgrade on the node"}, false},
		{"backup follower killed, upgrade follower still follows", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, exited(137, ""), running()),
		}), rollout.PodUpgrading, nil, nil, false},
		// Run again by edgecore's kubelet after keadm restarted it (seen
		// on a real node): its first end still counts, so the pod is in
		// its upgrade, not back in its backup.
		{"backup run again after its end", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: func() []corev1.ContainerStatus {
				cs := steps(ok, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}, running())
				cs[1].RestartCount = 1
				cs[1].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0,
					Message: `{"step":"backup","result":"succeeded","reason":"backup done"}`}}
				return cs
			}(),
		}), rollout.PodUpgrading, nil, nil, false},
		// Killed just after it wrote its report (seen on a real node):
		// the report is the verdict, not the exit code.
		{"backup follower killed after its report", testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, exited(137, `{"step":"backup","result":"succeeded","reason":"backup done"}`), running()),
		}), rollout.PodUpgrading, nil, nil, false},
		{"upgrade follower killed after a failure report", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, exited(137, `{"step":"rollback","result":"failed","reason":"rollback succeeded","rolledBack":true}`)),
		}), rollout.PodFailed, &runner.Report{Step: runner.StepRollback, Result: runner.ResultFailed, Reason: "rollback succeeded", RolledBack: true}, []string{"rollback succeeded"}, false},
		{"backup follower killed, the upgrade's verdict counts", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, exited(137, ""), exited(0, `{"step":"upgrade","result":"succeeded","reason":"upgraded"}`)),
		}), rollout.PodSucceeded, &runner.Report{Step: runner.StepUpgrade, Result: runner.ResultSucceeded, Reason: "upgraded"}, []string{"upgraded"}, false},
		{"report without reason", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: copied,
			ContainerStatuses: steps(ok, ok, exited(4, `{"step":"rollback","result":"failed","needsAttention":true}`)),
		}), rollout.PodFailed, &runner.Report{Step: runner.StepRollback, Result: runner.ResultFailed, NeedsAttention: true},
			[]string{"container upgrade exited 4 (upgrade and rollback failed, the node needs attention)"}, false},
		{"active deadline exceeded", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeadlineExceeded", Message: "Pod was active on the node longer than the specified deadline",
			InitContainerStatuses: copied, ContainerStatuses: steps(ok, ok, exited(137, "")),
		}), rollout.PodFailed, nil, []string{"outlived its deadline", "DeadlineExceeded", "longer than the specified deadline"}, false},
		{"evicted", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}),
			rollout.PodFailed, nil, []string{"the pod was evicted: Evicted: The node was low on resource: memory."}, false},
		{"failed without anything", testPod(true, corev1.PodStatus{Phase: corev1.PodFailed}), rollout.PodFailed, nil, []string{"the pod failed"}, false},
		{"deleting while upgrading", func() *corev1.Pod {
			pod := testPod(true, corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied, ContainerStatuses: steps(ok, ok, running())})
			pod.DeletionTimestamp = new(metav1.NewTime(time.Unix(0, 0)))
			return pod
		}(), rollout.PodUpgrading, nil, nil, true},
		{"unknown containers only", &corev1.Pod{
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "x"}, {Name: "y"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{cs("x", exited(0, "")), cs("y", running())}},
		}, rollout.PodPending, nil, nil, false},
		{"unknown phase with status", testPod(true, corev1.PodStatus{Phase: corev1.PodUnknown, InitContainerStatuses: copied,
			ContainerStatuses: steps(running(), running(), running()),
		}), rollout.PodChecking, nil, nil, false},
		{"empty terminated state", testPod(true, corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerCopyKeadm, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}),
		}, ContainerStatuses: []corev1.ContainerStatus{cs(runner.ContainerCheck, corev1.ContainerState{})}}), rollout.PodChecking, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			obs := observe(tt.pod)
			g.Expect(obs.Phase).To(Equal(tt.wantPhase), obs.Reason)
			g.Expect(obs.Report).To(Equal(tt.wantReport))
			g.Expect(obs.Deleting).To(Equal(tt.wantDelete))
			if tt.wantReason == nil {
				g.Expect(obs.Reason).To(BeEmpty())
			}
			for _, want := range tt.wantReason {
				g.Expect(obs.Reason).To(ContainSubstring(want))
			}
			if obs.Phase == rollout.PodFailed {
				g.Expect(obs.Reason).NotTo(BeEmpty(), "Failed always has a reason")
			}
		})
	}
}

// A huge raw termination message is cut in the reason.
func TestObserveTruncatesRawMessages(t *testing.T) {
	g := NewWithT(t)
	pod := testPod(true, corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: []corev1.ContainerStatus{
		cs(runner.ContainerCopyKeadm, exited(1, strings.Repeat("é", 4000))),
	}})
	obs := observe(pod)
	g.Expect(obs.Phase).To(Equal(rollout.PodFailed))
	g.Expect(len(obs.Reason)).To(BeNumerically("<", maxMessage+100))
	g.Expect(strings.ToValidUTF8(obs.Reason, "?")).To(Equal(obs.Reason))
}

// View is what the planner sees: the failed step as a status event, and
// whether the controller's finalizer still holds the pod.
func TestViewFailedEventAndTracking(t *testing.T) {
	needsAttention := `{"step":"upgrade","result":"failed","reason":"upgrade and rollback failed","needsAttention":true}`
	upgradeFailed := `{"step":"upgrade","result":"failed","reason":"keadm upgrade failed before edgecore was touched"}`
	for _, tc := range []struct {
		name       string
		status     corev1.PodStatus
		wantPhase  rollout.PodPhase
		wantEvent  string
		wantReason string
	}{
		{"check failed", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(runner.ExitCheckFailed, checkFailed), exited(runner.ExitNotRun, ""), exited(runner.ExitNotRun, ""))},
			rollout.PodFailed, v1alpha1.EventCheck, "check failed: cpu usage 95.0% >= threshold 80%"},
		{"backup ran out of time", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, "{}"), exited(runner.ExitDeadline, deadline), exited(runner.ExitNotRun, ""))},
			rollout.PodFailed, v1alpha1.EventBackUp, "deadline 2030-01-02T03:09:05Z passed"},
		{"rolled back", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, "{}"), exited(0, "{}"), exited(runner.ExitRolledBack, rolledBack))},
			rollout.PodFailed, v1alpha1.EventRollback, "rollback succeeded"},
		{"rollback failed too", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, "{}"), exited(0, "{}"), exited(runner.ExitNeedsAttention, needsAttention))},
			rollout.PodFailed, v1alpha1.EventRollback, "upgrade and rollback failed"},
		{"upgrade failed, nothing touched", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, "{}"), exited(0, "{}"), exited(runner.ExitUpgradeFailedUntouched, upgradeFailed))},
			rollout.PodFailed, v1alpha1.EventUpgrade, "before edgecore was touched"},
		{"no report, a runner code: the upgrade step is blamed", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, "{}"), exited(0, "{}"), exited(runner.ExitRolledBack, ""))},
			rollout.PodFailed, v1alpha1.EventUpgrade, "container upgrade exited 3 (upgrade failed, rolled back)"},
		{"killed follower: no failed event", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, "{}"), exited(0, "{}"), exited(137, ""))},
			rollout.PodDetached, "", "container upgrade exited 137 (killed)"},
		{"running: no failed event", corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: steps(exited(0, "{}"), running(), running())},
			rollout.PodBackingUp, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			view := View(testPod(true, tc.status))
			g.Expect(view.Phase).To(Equal(tc.wantPhase))
			g.Expect(view.FailedEvent).To(Equal(tc.wantEvent))
			g.Expect(view.Reason).To(ContainSubstring(tc.wantReason))
			g.Expect(view.Tracked).To(BeTrue(), "Build adds the tracking finalizer")
		})
	}

	g := NewWithT(t)
	released := testPod(true, corev1.PodStatus{Phase: corev1.PodSucceeded})
	released.Finalizers = nil
	released.DeletionTimestamp = &metav1.Time{Time: buildTime}
	view := View(released)
	g.Expect(view.Tracked).To(BeFalse())
	g.Expect(view.Deleting).To(BeTrue())
	g.Expect(View(nil)).To(Equal(rollout.PodView{Phase: rollout.PodPending}), "a missing pod reads as not started, and View does not panic")
}

// otherPod is an upgrade pod of job (UID jobUID) on node, as Build makes
// it, named name ("" for the node's pod name), in the given phase.
func otherPod(job, jobUID, node, name string, phase corev1.PodPhase, tracked, deleting bool) corev1.Pod {
	p := baseParams()
	p.JobName, p.JobUID, p.NodeName = job, jobUID, node
	p.OwnerRef = &metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeUpgradeJob", Name: job,
		UID: types.UID(jobUID), Controller: new(true)}
	pod := Build(p, buildTime)
	if name != "" {
		pod.Name = name
	}
	pod.Status.Phase = phase
	if phase == corev1.PodSucceeded {
		pod.Status.ContainerStatuses = steps(exited(0, "{}"), exited(0, "{}"), exited(0, upgraded))
	}
	if !tracked {
		pod.Finalizers = nil
	}
	if deleting {
		pod.DeletionTimestamp = &metav1.Time{Time: buildTime}
	}
	return *pod
}

func TestMarkBusy(t *testing.T) {
	const me, node = "my-uid", "edge-1"
	legacy := func(uid string) string { return LegacyPodName(uid, node) }
	tests := []struct {
		name     string
		pods     []corev1.Pod
		wantBusy string
		wantKept string
	}{
		{name: "no pod"},
		{name: "the job's own pod, running", pods: []corev1.Pod{otherPod("mine", me, node, "", corev1.PodRunning, true, false)}},
		{name: "the job's own pod with its legacy name", pods: []corev1.Pod{otherPod("mine", me, node, legacy(me), corev1.PodRunning, true, false)}},
		{name: "another job's pod, running", pods: []corev1.Pod{otherPod("other", "o-uid", node, "", corev1.PodRunning, true, false)}, wantBusy: "other"},
		{name: "a re-created job's old pod, running", pods: []corev1.Pod{otherPod("mine", "old-uid", node, "", corev1.PodRunning, true, false)}, wantBusy: "mine"},
		{name: "another job's pod, finished, outcome not yet recorded", pods: []corev1.Pod{otherPod("other", "o-uid", node, "", corev1.PodFailed, true, false)}, wantBusy: "other"},
		{name: "another job's pod, finished and released: kept for its logs", pods: []corev1.Pod{otherPod("other", "o-uid", node, "", corev1.PodFailed, false, false)}, wantKept: "other"},
		{name: "another job's pod, succeeded and released, not yet deleted", pods: []corev1.Pod{otherPod("other", "o-uid", node, "", corev1.PodSucceeded, false, false)}, wantKept: "other"},
		{name: "another job's pod, finished, being deleted", pods: []corev1.Pod{otherPod("other", "o-uid", node, "", corev1.PodFailed, false, true)}, wantBusy: "other"},
		{name: "another job's legacy pod, running", pods: []corev1.Pod{otherPod("other", "o-uid", node, legacy("o-uid"), corev1.PodRunning, true, false)}, wantBusy: "other"},
		{name: "another job's legacy pod, finished and released: blocks no name", pods: []corev1.Pod{otherPod("other", "o-uid", node, legacy("o-uid"), corev1.PodFailed, false, false)}},
		{name: "a legacy pod and the node's pod hold it: the node's pod is named", pods: []corev1.Pod{
			otherPod("a-legacy", "a-uid", node, legacy("a-uid"), corev1.PodRunning, true, false),
			otherPod("z-new", "z-uid", node, "", corev1.PodRunning, true, false),
		}, wantBusy: "z-new"},
		{name: "two legacy pods hold it: the first job by name", pods: []corev1.Pod{
			otherPod("z-legacy", "z-uid", node, legacy("z-uid"), corev1.PodRunning, true, false),
			otherPod("a-legacy", "a-uid", node, legacy("a-uid"), corev1.PodRunning, true, false),
		}, wantBusy: "a-legacy"},
		{name: "a running legacy pod beside a kept one", pods: []corev1.Pod{
			otherPod("legacy", "l-uid", node, legacy("l-uid"), corev1.PodRunning, true, false),
			otherPod("kept", "k-uid", node, "", corev1.PodFailed, false, false),
		}, wantBusy: "legacy", wantKept: "kept"},
		{name: "a pod on a node the job does not have", pods: []corev1.Pod{otherPod("other", "o-uid", "edge-2", "", corev1.PodRunning, true, false)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			nodes := map[string]rollout.NodeView{node: {Exists: true, Edge: true, Ready: true}}
			kept := MarkBusy(tt.pods, me, nodes)
			g.Expect(nodes[node].BusyWith).To(Equal(tt.wantBusy))
			g.Expect(nodes[node].KeptPodOf).To(Equal(tt.wantKept))
			g.Expect(nodes).NotTo(HaveKey("edge-2"), "only the job's nodes are marked")
			if tt.wantKept == "" {
				g.Expect(kept).To(BeEmpty())
				return
			}
			g.Expect(kept).To(HaveKey(node))
			g.Expect(kept[node].Name).To(Equal(PodName(node)))
			g.Expect(JobOf(kept[node])).To(Equal(tt.wantKept))
		})
	}
}
