package upgradepod

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// View is how the controller reads an upgrade pod: the one place that
// turns a pod's status into the planner's view of it (its phase, the
// step a failed pod ended on, why, and whether it is deleted or still
// tracked). The planner (pkg/rollout) owns the phases it decides on; this
// package only reads pods into them, by the contract in
// pkg/runner/contract.go. It never panics, whatever the pod.
func View(pod *corev1.Pod) rollout.PodView {
	obs := observe(pod)
	view := rollout.PodView{Phase: obs.Phase, Reason: obs.Reason, Deleting: obs.Deleting, Pull: obs.Pull}
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

	stepsStarted := false
	for _, c := range pod.Spec.Containers {
		if s := findStatus(st.ContainerStatuses, c.Name); s != nil && (s.State.Running != nil || s.State.Terminated != nil) {
			stepsStarted = true
		}
	}

	// A container that exited non-zero ends the pod (restartPolicy Never),
	// even if the pod phase has not caught up yet. Look in run order: a
	// step that did not run because the one before it failed exits
	// non-zero too, after it.
	for _, c := range pod.Spec.InitContainers {
		s := findStatus(st.InitContainerStatuses, c.Name)
		if t := terminated(s); t != nil && t.ExitCode != 0 && !stepsStarted {
			// Once the steps run, keadm was in place: a copy-keadm that a
			// kubelet ran again later (real edgecore's does after a
			// restart) cannot undo that.
			return failedBy(obs, c.Name, t)
		}
	}
	for _, c := range pod.Spec.Containers {
		s := findStatus(st.ContainerStatuses, c.Name)
		if t := terminated(s); t != nil && t.ExitCode != 0 {
			return failedBy(obs, c.Name, t)
		}
	}

	switch st.Phase {
	case corev1.PodSucceeded:
		return succeeded(obs, pod)
	case corev1.PodFailed:
		obs.Phase = rollout.PodFailed
		what := "the pod failed"
		if st.Reason == "Evicted" {
			what = "the pod was evicted"
		}
		obs.Reason = joinNonEmpty(": ", what, st.Reason, st.Message)
		return obs
	}

	// Running or pending. Until copy-keadm is done the pod is Pending, or
	// in its first step while copy-keadm runs.
	if !stepsStarted {
		for _, c := range pod.Spec.InitContainers {
			s := findStatus(st.InitContainerStatuses, c.Name)
			if terminated(s) != nil {
				continue // exit 0, see above
			}
			if s != nil && s.State.Running != nil {
				obs.Phase = stepPhase(pod, c.Name)
				return obs
			}
			obs.Phase = rollout.PodPending
			obs.waiting(c, s, true)
			return obs
		}
	}
	// The first step not finished successfully is where the pod is; the
	// steps after it are waiting for it.
	for i, c := range pod.Spec.Containers {
		s := findStatus(st.ContainerStatuses, c.Name)
		if terminated(s) != nil {
			continue // exit 0, see above
		}
		if s == nil || s.State.Running == nil {
			// Not started yet: Pending while nothing has run.
			obs.Phase = stepPhase(pod, c.Name)
			if i == 0 && !stepsStarted && len(pod.Spec.InitContainers) == 0 {
				obs.Phase = rollout.PodPending
			}
			obs.waiting(c, s, !stepsStarted)
			return obs
		}
		obs.Phase = stepPhase(pod, c.Name)
		return obs
	}
	if len(pod.Spec.Containers) == 0 {
		// Not a pod this package built.
		obs.Phase = rollout.PodPending
		return obs
	}
	// Every step exited 0: done, the pod phase lags.
	return succeeded(obs, pod)
}

// stepPhase is the phase while container name runs. copy-keadm prepares the
// first real step, so it counts as that step.
func stepPhase(pod *corev1.Pod, name string) rollout.PodPhase {
	switch name {
	case runner.ContainerCheck:
		return rollout.PodChecking
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
			obs.Reason = firstLine(rep.Reason)
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
		obs.Reason += ": " + truncate(msg, maxMessage)
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
	return joinNonEmpty(": ", "container "+name+" waiting", s.State.Waiting.Reason, truncate(s.State.Waiting.Message, maxMessage))
}

func findStatus(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

func terminated(s *corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if s == nil {
		return nil
	}
	return s.State.Terminated
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

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && (s[i]&0xC0) == 0x80 {
		i--
	}
	return s[:i] + "..."
}

// MarkBusy sets BusyWith on the nodes where an upgrade pod of another job
// than jobUID's still runs or is being deleted, so that the planner does not
// start a second upgrade beside it. The controller and the plugin's plan
// both mark nodes here, so they agree on which nodes wait.
func MarkBusy(pods []corev1.Pod, jobUID string, nodes map[string]rollout.NodeView) {
	for i := range pods {
		pod := &pods[i]
		name := pod.Annotations[v1alpha1.AnnotationNode]
		view, ok := nodes[name]
		if !ok || pod.Name == PodName(jobUID, name) {
			continue
		}
		// A finished pod (kept for its logs) holds nothing. A pod being
		// deleted does, whatever its status says, until it is gone: a real
		// one rolls back in its grace period, and an offline node's status
		// is stale.
		if obs := observe(pod); !obs.Deleting && obs.Phase.Terminated() {
			continue
		}
		view.BusyWith = pod.Labels[v1alpha1.LabelJob]
		if view.BusyWith == "" {
			view.BusyWith = "(unknown)"
		}
		nodes[name] = view
	}
}
