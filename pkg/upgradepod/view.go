package upgradepod

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// View is how the controller reads an upgrade pod: the one place that
// turns a pod's status into the planner's view of it (its phase, the
// step a failed pod ended on, why, and whether it is deleted or still
// tracked). The planner (pkg/rollout) owns the phases it decides on; this
// package only reads pods into them, by the contract in
// pkg/runner/contract.go. It never panics, whatever the pod. The reason is
// the node's text (termination and waiting messages), so it is cleaned
// here, where it enters the controller, before it reaches status, Events
// and logs.
func View(pod *corev1.Pod) rollout.PodView {
	obs := observe(pod)
	view := rollout.PodView{Phase: obs.Phase, Reason: nodetext.Clean(obs.Reason), Deleting: obs.Deleting, Pull: obs.Pull}
	if pod != nil {
		view.Tracked = slices.Contains(pod.Finalizers, v1alpha1.FinalizerPodTracking)
	}
	if obs.Phase == rollout.PodFailed {
		view.FailedEvent = failedEvent(obs.Report)
	}
	return view
}

// failedEvent names the step a failed pod ended on, as a status event: the
// step its report names, Rollback when the upgrade was rolled back (or the
// rollback failed), Upgrade when there is no report to say.
func failedEvent(rep *runner.Report) string {
	switch {
	case rep == nil:
		return v1alpha1.EventUpgrade
	case rep.RolledBack, rep.NeedsAttention, rep.Step == runner.StepRollback:
		return v1alpha1.EventRollback
	case rep.Step == runner.StepCheck:
		return v1alpha1.EventCheck
	case rep.Step == runner.StepConfirm:
		return v1alpha1.EventWaitingConfirmation
	case rep.Step == runner.StepBackup:
		return v1alpha1.EventBackUp
	}
	return v1alpha1.EventUpgrade
}

// observation is what a pod's status says about the upgrade.
type observation struct {
	Phase rollout.PodPhase
	// Report is the parsed termination message of the container that ended
	// the pod, if it left one.
	Report *runner.Report
	// Reason says why, in words; always set for Failed, and set while
	// Pending when a container is stuck (e.g. ImagePullBackOff).
	Reason string
	// Deleting: the pod has a deletionTimestamp.
	Deleting bool
	// Pull: what the pulls of the pod's images say, while no step has
	// started (see pull.go).
	Pull rollout.PullState
}

// podReasonDeadlineExceeded is the pod status reason the kubelet sets when
// activeDeadlineSeconds ran out.
const podReasonDeadlineExceeded = "DeadlineExceeded"

// maxMessage bounds raw (non-report) termination messages in a Reason.
const maxMessage = 1024

// observe maps a pod's status to a phase.
func observe(pod *corev1.Pod) observation {
	if pod == nil {
		return observation{Phase: rollout.PodPending}
	}
	obs := observation{Deleting: pod.DeletionTimestamp != nil}
	st := &pod.Status

	// The kubelet killed the pod at its active deadline: that explains
	// whatever exit codes the containers show.
	if st.Phase == corev1.PodFailed && st.Reason == podReasonDeadlineExceeded {
		obs.Phase = rollout.PodFailed
		obs.Reason = joinNonEmpty(": ", "the pod outlived its deadline and was stopped by the kubelet (DeadlineExceeded)", st.Message)
		return obs
	}
	started := stepsStarted(pod)
	if failed, ok := firstFailure(obs, pod, started); ok {
		return failed
	}
	if t := terminated(findStatus(st.ContainerStatuses, runner.ContainerUpgrade)); t != nil && ended(runner.ContainerUpgrade, t) == endedSucceeded {
		// The unit's verdict, whatever happened to the other containers.
		return succeeded(obs, pod)
	}
	lost := lostFollowers(pod)
	switch st.Phase {
	case corev1.PodSucceeded:
		return succeeded(obs, pod)
	case corev1.PodFailed:
		return podFailed(obs, st, lost)
	}
	return unfinished(obs, pod, started, lost)
}

// stepsStarted reports whether a step container runs or has run.
func stepsStarted(pod *corev1.Pod) bool {
	started := false
	for _, c := range pod.Spec.Containers {
		if s := findStatus(pod.Status.ContainerStatuses, c.Name); s != nil && (s.State.Running != nil || s.State.Terminated != nil) {
			started = true
		}
	}
	return started
}

// firstFailure finds the container whose failure ends the pod, if one
// did.
//
// A container that exited non-zero ends the pod (restartPolicy Never),
// even if the pod phase has not caught up yet. Look in run order: a
// step that did not run because the one before it failed exits
// non-zero too, after it. A follower that ended without the unit's
// verdict (killed, or stopped following) ends nothing: the upgrade goes
// on in the job's unit on the node.
func firstFailure(obs observation, pod *corev1.Pod, stepsStarted bool) (observation, bool) {
	st := &pod.Status
	for _, c := range pod.Spec.InitContainers {
		s := findStatus(st.InitContainerStatuses, c.Name)
		if t := terminated(s); t != nil && t.ExitCode != 0 && !stepsStarted {
			// Once the steps run, keadm was in place: a copy-keadm that a
			// kubelet ran again later (real edgecore's does after a
			// restart) cannot undo that.
			return failedBy(obs, c.Name, t), true
		}
	}
	for _, c := range pod.Spec.Containers {
		t := terminated(findStatus(st.ContainerStatuses, c.Name))
		if t != nil && ended(c.Name, t) == endedFailed {
			return failedBy(obs, c.Name, t), true
		}
	}
	return obs, false
}

// lostFollowers describes the followers that ended without the unit's
// verdict.
func lostFollowers(pod *corev1.Pod) []string {
	var lost []string
	for _, c := range pod.Spec.Containers {
		if t := terminated(findStatus(pod.Status.ContainerStatuses, c.Name)); t != nil && ended(c.Name, t) == endedLost {
			lost = append(lost, lostFollower(c.Name, t))
		}
	}
	return lost
}

// podFailed reads a pod the kubelet marked Failed with no container's
// failure to explain it.
func podFailed(obs observation, st *corev1.PodStatus, lost []string) observation {
	if len(lost) > 0 {
		return detached(obs, lost)
	}
	obs.Phase = rollout.PodFailed
	what := "the pod failed"
	if st.Reason == "Evicted" {
		what = "the pod was evicted"
	}
	obs.Reason = joinNonEmpty(": ", what, st.Reason, st.Message)
	return obs
}

// unfinished reads a running or pending pod: the step it is in, or what it
// waits for.
func unfinished(obs observation, pod *corev1.Pod, stepsStarted bool, lost []string) observation {
	// Until copy-keadm is done the pod is Pending, or in its first step
	// while copy-keadm runs.
	if !stepsStarted {
		if o, ok := initProgress(obs, pod); ok {
			return o
		}
	}
	if o, ok := stepProgress(obs, pod, stepsStarted); ok {
		return o
	}
	if len(pod.Spec.Containers) == 0 {
		// Not a pod this package built.
		obs.Phase = rollout.PodPending
		return obs
	}
	if len(lost) > 0 {
		return detached(obs, lost)
	}
	// Every step exited 0: done, the pod phase lags.
	return succeeded(obs, pod)
}

// initProgress reads the init container that has not finished, if one
// has not.
func initProgress(obs observation, pod *corev1.Pod) (observation, bool) {
	for _, c := range pod.Spec.InitContainers {
		s := findStatus(pod.Status.InitContainerStatuses, c.Name)
		if terminated(s) != nil {
			continue // exit 0, see firstFailure
		}
		if s != nil && s.State.Running != nil {
			obs.Phase = stepPhase(pod, c.Name)
			return obs, true
		}
		obs.Phase = rollout.PodPending
		obs.waiting(c, s, true)
		return obs, true
	}
	return obs, false
}

// stepProgress reads the first step not finished successfully, which is
// where the pod is; the steps after it are waiting for it. A lost
// follower is passed over: the one after it follows the same unit.
func stepProgress(obs observation, pod *corev1.Pod, stepsStarted bool) (observation, bool) {
	for i, c := range pod.Spec.Containers {
		s := findStatus(pod.Status.ContainerStatuses, c.Name)
		if terminated(s) != nil {
			continue // exit 0, or a lost follower (see firstFailure)
		}
		obs.Phase = stepPhase(pod, c.Name)
		if s == nil || s.State.Running == nil {
			// Not started yet: Pending while nothing has run.
			if i == 0 && !stepsStarted && len(pod.Spec.InitContainers) == 0 {
				obs.Phase = rollout.PodPending
			}
			obs.waiting(c, s, !stepsStarted)
		}
		return obs, true
	}
	return obs, false
}

// How a step container ended, for the pod's outcome.
const (
	endedSucceeded = "succeeded"
	endedFailed    = "failed"
	// endedLost: a follower (backup, upgrade) that ended without the
	// unit's verdict.
	endedLost = "lost"
)

// ended says how a terminated step container ended. Its report, when it
// left one, is the verdict whatever its exit code: a container killed just
// after it wrote its report (seen on a real node) exits 137 with it. The
// check runs its step itself, so its end is always a verdict; backup and
// upgrade follow the job's unit on the host, and a follower killed (an OOM,
// an eviction, the pod deleted) or stopped before the unit recorded its
// step (runner.ExitDetached) says nothing of the upgrade, which goes on on
// the node.
func ended(container string, t *corev1.ContainerStateTerminated) string {
	follower := container == runner.ContainerBackup || container == runner.ContainerUpgrade || container == runner.ContainerRollback
	if rep, err := runner.ParseReport(t.Message); err == nil {
		switch {
		case rep.Result == runner.ResultSucceeded:
			return endedSucceeded
		case rep.Detached && follower:
			return endedLost
		}
		return endedFailed
	}
	switch {
	case t.ExitCode == 0:
		return endedSucceeded
	case !follower:
		return endedFailed
	case t.ExitCode == runner.ExitDetached:
		return endedLost
	case runner.ExitMeaning(int(t.ExitCode)) != "":
		// A runner exit code stands for its verdict when the report was lost.
		return endedFailed
	}
	return endedLost
}

// lostFollower describes a follower that ended without a verdict.
func lostFollower(container string, t *corev1.ContainerStateTerminated) string {
	if rep, err := runner.ParseReport(t.Message); err == nil && rep.Reason != "" {
		line, _, _ := strings.Cut(rep.Reason, "\n")
		return fmt.Sprintf("container %s: %s", container, line)
	}
	what := fmt.Sprintf("container %s exited %d", container, t.ExitCode)
	if meaning := exitMeaning(container, t.ExitCode); meaning != "" {
		what += " (" + meaning + ")"
	}
	return what
}

// detached is a pod whose followers all ended without the unit's verdict:
// the outcome is on the node, and the Node object will show it.
func detached(obs observation, lost []string) observation {
	obs.Phase = rollout.PodDetached
	obs.Reason = "the upgrade pod ended before the node's upgrade unit reported (" + strings.Join(lost, "; ") +
		"); the unit goes on on the node"
	return obs
}

// stepPhase is the phase while container name runs. copy-keadm prepares the
// first real step, so it counts as that step.
func stepPhase(pod *corev1.Pod, name string) rollout.PodPhase {
	switch name {
	case runner.ContainerCheck:
		return rollout.PodChecking
	case runner.ContainerConfirm:
		return rollout.PodWaitingConfirmation
	case runner.ContainerBackup:
		return rollout.PodBackingUp
	case runner.ContainerUpgrade:
		return rollout.PodUpgrading
	case runner.ContainerCopyKeadm:
		for _, c := range pod.Spec.Containers {
			if c.Name == runner.ContainerCheck {
				return rollout.PodChecking
			}
		}
		return rollout.PodBackingUp
	}
	// A container this package did not build: say the pod is still getting
	// ready rather than guess.
	return rollout.PodPending
}

func succeeded(obs observation, pod *corev1.Pod) observation {
	obs.Phase = rollout.PodSucceeded
	if t := terminated(findStatus(pod.Status.ContainerStatuses, runner.ContainerUpgrade)); t != nil {
		if rep, err := runner.ParseReport(t.Message); err == nil {
			obs.Report = &rep
			obs.Reason, _, _ = strings.Cut(rep.Reason, "\n")
		}
	}
	return obs
}

func failedBy(obs observation, container string, t *corev1.ContainerStateTerminated) observation {
	obs.Phase = rollout.PodFailed
	if rep, err := runner.ParseReport(t.Message); err == nil {
		obs.Report = &rep
		if rep.Reason != "" {
			obs.Reason = rep.Reason
			return obs
		}
	}
	obs.Reason = fmt.Sprintf("container %s exited %d", container, t.ExitCode)
	if meaning := exitMeaning(container, t.ExitCode); meaning != "" {
		obs.Reason += " (" + meaning + ")"
	}
	if msg := strings.TrimSpace(t.Message); msg != "" {
		obs.Reason += ": " + rollout.Truncate(msg, maxMessage)
	} else if t.Reason != "" {
		obs.Reason += ": " + t.Reason
	}
	return obs
}

// exitMeaning explains an exit code without a readable report: the
// runner's codes mean nothing in copy-keadm, which runs cp.
func exitMeaning(container string, code int32) string {
	switch code {
	case 128 + 9:
		return "killed"
	case 128 + 15:
		return "terminated"
	}
	if container == runner.ContainerCopyKeadm {
		return ""
	}
	return runner.ExitMeaning(int(code))
}

// waitingReason describes a container stuck waiting for something other
// than its turn.
func waitingReason(name string, s *corev1.ContainerStatus) string {
	if s == nil || s.State.Waiting == nil {
		return ""
	}
	switch s.State.Waiting.Reason {
	case "", "PodInitializing", "ContainerCreating":
		return ""
	}
	return joinNonEmpty(": ", "container "+name+" waiting", s.State.Waiting.Reason, rollout.Truncate(s.State.Waiting.Message, maxMessage))
}

func findStatus(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

// terminated is how a container ended, the first time it did: real
// edgecore's kubelet runs a pod's finished containers again after keadm
// restarts it (Attempt 1, in a restartPolicy Never pod), and the container
// then shows waiting or running with its first end as its last state. Its
// step is over all the same (the run again reports the same record).
func terminated(s *corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	switch {
	case s == nil:
		return nil
	case s.State.Terminated != nil:
		return s.State.Terminated
	}
	return s.LastTerminationState.Terminated
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// MarkBusy tells the planner what other jobs' upgrade pods leave on the
// nodes: it sets BusyWith on a node where another job than jobUID's has an
// upgrade pod that still holds it, and KeptPodOf where another job's pod
// that holds nothing any more still has the node's pod name. It returns
// those kept pods by node, for the controller to delete before it creates
// its own (see rollout.Dispatch.Replaces). The controller and the plugin's
// plan both mark nodes here, so they agree on which nodes wait.
//
// A pod holds its node while it runs, while it is being deleted (whatever
// its status says: a real one rolls back in its grace period, and an
// offline node's status is stale), and while its job has not recorded its
// outcome (the tracking finalizer is still on). A finished pod its job has
// released is kept only for its logs: it holds nothing, but while it exists
// the API server refuses another pod of its name (PodName), so a job that
// needs the node deletes it. A pod with a legacy per-job name blocks no name.
func MarkBusy(pods []corev1.Pod, jobUID string, nodes map[string]rollout.NodeView) map[string]*corev1.Pod {
	kept := map[string]*corev1.Pod{}
	// Of several pods holding one node, the one with the node's pod name
	// is named, then the first job by name: a reason that changed from
	// plan to plan would cost a status write each time.
	holder := map[string]*corev1.Pod{}
	for i := range pods {
		pod := &pods[i]
		name := pod.Annotations[v1alpha1.AnnotationNode]
		if _, ok := nodes[name]; !ok || Owns(jobUID, pod) {
			continue
		}
		obs := observe(pod)
		tracked := slices.Contains(pod.Finalizers, v1alpha1.FinalizerPodTracking)
		switch {
		case obs.Deleting || !obs.Phase.Terminated() || tracked:
			if h := holder[name]; h == nil || holdsBefore(pod, h, name) {
				holder[name] = pod
			}
		case pod.Name == PodName(name):
			kept[name] = pod
		}
	}
	for name, pod := range holder {
		view := nodes[name]
		view.BusyWith = JobOf(pod)
		nodes[name] = view
	}
	for name, pod := range kept {
		view := nodes[name]
		view.KeptPodOf = JobOf(pod)
		nodes[name] = view
	}
	return kept
}

// holdsBefore orders the pods holding one node: the one with the node's
// pod name first, then by job.
func holdsBefore(a, b *corev1.Pod, node string) bool {
	if an, bn := a.Name == PodName(node), b.Name == PodName(node); an != bn {
		return an
	}
	return JobOf(a) < JobOf(b)
}

// JobOf names the job an upgrade pod belongs to, for reasons and events:
// its owner's name, else its job label (which may be shortened).
func JobOf(pod *corev1.Pod) string {
	if ref := metav1.GetControllerOf(pod); ref != nil && ref.Name != "" {
		return ref.Name
	}
	if job := pod.Labels[v1alpha1.LabelJob]; job != "" {
		return job
	}
	return "(unknown)"
}
