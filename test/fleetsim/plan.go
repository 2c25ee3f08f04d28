package fleetsim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UpgradeContainer is the main container of an upgrade pod, the one that
// runs `keadm upgrade` and reports its result in a termination message.
const UpgradeContainer = "upgrade"

// Exit codes the simulated keadm uses.
const (
	// ExitUpgradeFailed is keadm's exit code when the upgrade failed and
	// edgecore was rolled back.
	ExitUpgradeFailed = 3
	// ExitStepFailed is the exit code of a failing init step (check, backup).
	ExitStepFailed = 1
	// ExitKilled is what a container killed by SIGTERM on pod deletion shows.
	ExitKilled = 143
)

// TerminationMessage is the JSON the simulated keadm writes to
// /dev/termination-log when a step fails.
type TerminationMessage struct {
	Step        string `json:"step"`
	Result      string `json:"result"`
	Reason      string `json:"reason"`
	RolledBack  bool   `json:"rolledBack,omitempty"`
	FromVersion string `json:"fromVersion,omitempty"`
	ToVersion   string `json:"toVersion,omitempty"`
}

// outcome is how a pod's run ends, from the node's behaviour annotation.
type outcome int

const (
	outcomeSucceed outcome = iota
	outcomeFail
	outcomeHang
)

// ParseBehavior splits a behaviour annotation into what happens and in which
// container ("" = the upgrade container). Unknown values are an error.
func ParseBehavior(v string) (Behavior, string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "" || v == string(BehaviorSucceed):
		return BehaviorSucceed, "", nil
	case v == string(BehaviorFail), v == string(BehaviorHang):
		return Behavior(v), "", nil
	case strings.HasPrefix(v, string(BehaviorFail)+"-"):
		return BehaviorFail, strings.TrimPrefix(v, string(BehaviorFail)+"-"), nil
	case strings.HasPrefix(v, string(BehaviorHang)+"-"):
		return BehaviorHang, strings.TrimPrefix(v, string(BehaviorHang)+"-"), nil
	}
	return BehaviorSucceed, "", fmt.Errorf("fleetsim: unknown behavior %q", v)
}

// plan is the timeline of one upgrade pod: its init containers run one after
// the other, then its main containers together, over the pod's duration.
// Progress is counted in steps: 0 not started, 1+i step i running (step i is
// init container i, step nInit the main containers), done() finished.
type plan struct {
	start    time.Time
	nInit    int
	begins   []time.Time // begins[i] is when step i starts; begins[nInit+1] the end
	outcome  outcome
	stopStep int // the step that fails or hangs
}

// stepWeight shares the pod's duration among its containers: copying keadm
// is quick, the upgrade itself the longest part.
func stepWeight(name string) int {
	switch name {
	case "copy-keadm":
		return 1
	case UpgradeContainer, "":
		return 5
	}
	return 2
}

func newPlan(pod *corev1.Pod, start time.Time, d time.Duration, b Behavior, at string) plan {
	p := plan{start: start, nInit: len(pod.Spec.InitContainers)}
	weights := make([]int, 0, p.nInit+1)
	total := 0
	for _, c := range pod.Spec.InitContainers {
		weights = append(weights, stepWeight(c.Name))
	}
	weights = append(weights, stepWeight(""))
	for _, w := range weights {
		total += w
	}
	p.begins = make([]time.Time, len(weights)+1)
	acc := 0
	for i, w := range weights {
		p.begins[i] = start.Add(d * time.Duration(acc) / time.Duration(total))
		acc += w
	}
	p.begins[len(weights)] = start.Add(d)

	p.stopStep = p.nInit
	for i, c := range pod.Spec.InitContainers {
		if at != "" && c.Name == at {
			p.stopStep = i
		}
	}
	switch b {
	case BehaviorFail:
		p.outcome = outcomeFail
	case BehaviorHang:
		p.outcome = outcomeHang
	default:
		p.outcome = outcomeSucceed
	}
	return p
}

func (p plan) done() int { return p.nInit + 2 }

// progressAt is the step the pod should show at t.
func (p plan) progressAt(t time.Time) int {
	switch p.outcome {
	case outcomeFail:
		if !t.Before(p.begins[p.stopStep+1]) {
			return p.done()
		}
	case outcomeHang:
		if !t.Before(p.begins[p.stopStep]) {
			return 1 + p.stopStep
		}
	}
	if !t.Before(p.begins[p.nInit+1]) {
		return p.done()
	}
	progress := 1
	for i := 1; i <= p.nInit; i++ {
		if !t.Before(p.begins[i]) {
			progress = 1 + i
		}
	}
	return progress
}

// nextChange is when progressAt changes after t; ok is false when it never
// does (finished, or hung).
func (p plan) nextChange(t time.Time) (time.Time, bool) {
	cur := p.progressAt(t)
	if cur == p.done() || (p.outcome == outcomeHang && cur == 1+p.stopStep) {
		return time.Time{}, false
	}
	// Step cur-1 is running; the next change is when it ends.
	return p.begins[cur], true
}

// progressOf reads how far a pod got from its status.
func progressOf(pod *corev1.Pod) int {
	nInit := len(pod.Spec.InitContainers)
	switch {
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return nInit + 2
	case pod.Status.StartTime == nil:
		return 0
	}
	done := 0
	for _, s := range pod.Status.InitContainerStatuses {
		if s.State.Terminated != nil && s.State.Terminated.ExitCode == 0 {
			done++
		}
	}
	return 1 + min(done, nInit)
}

// failure describes a failing step for podStatus.
type failure struct {
	step    int
	message string
}

// podStatus is the status a kubelet would report for the pod at progress.
// fail is nil unless progress is done() and the pod failed.
func (p plan) podStatus(pod *corev1.Pod, progress int, fail *failure) corev1.PodStatus {
	ts := func(t time.Time) metav1.Time { return metav1.NewTime(t) }
	finished := progress == p.done()
	// running is the step now running; with finished it is past the end.
	running := progress - 1
	if finished {
		running = p.nInit + 1
		if fail != nil {
			running = fail.step
		}
	}
	st := corev1.PodStatus{StartTime: new(ts(p.start))}

	waiting := &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	for i, c := range pod.Spec.InitContainers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: imageID(c.Image)}
		switch {
		case i < running:
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: ts(p.begins[i]), FinishedAt: ts(p.begins[i+1]),
			}
			cs.Ready = true
		case i == running && finished: // this init container failed
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: ExitStepFailed, Reason: "Error", Message: fail.message,
				StartedAt: ts(p.begins[i]), FinishedAt: ts(p.begins[i+1]),
			}
		case i == running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: ts(p.begins[i])}
			cs.Started = new(true)
		default:
			cs.State.Waiting = waiting
		}
		if cs.State.Running == nil {
			cs.Started = new(false)
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}

	failsMain := finished && fail != nil && fail.step == p.nInit
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), Started: new(false)}
		switch {
		case failsMain && (c.Name == UpgradeContainer || len(pod.Spec.Containers) == 1):
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: ExitUpgradeFailed, Reason: "Error", Message: fail.message,
				StartedAt: ts(p.begins[p.nInit]), FinishedAt: ts(p.begins[p.nInit+1]),
			}
		case running > p.nInit || failsMain:
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: ts(p.begins[p.nInit]), FinishedAt: ts(p.begins[p.nInit+1]),
			}
		case running == p.nInit:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: ts(p.begins[p.nInit])}
			cs.Ready = true
			cs.Started = new(true)
		default:
			cs.State.Waiting = waiting
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}

	initialized := running >= p.nInit && !(finished && fail != nil && fail.step < p.nInit)
	switch {
	case finished && fail != nil:
		st.Phase = corev1.PodFailed
	case finished:
		st.Phase = corev1.PodSucceeded
	case running == p.nInit:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	changed := ts(p.begins[min(running, p.nInit+1)])
	if finished && fail != nil {
		changed = ts(p.begins[fail.step+1])
	}
	st.Conditions = podConditions(ts(p.start), changed, initialized, st.Phase == corev1.PodRunning, finished)
	return st
}

func podConditions(start, changed metav1.Time, initialized, ready, finished bool) []corev1.PodCondition {
	cond := func(t corev1.PodConditionType, ok bool, at metav1.Time, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: at, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		return c
	}
	notReady := "ContainersNotReady"
	switch {
	case finished:
		notReady = "PodCompleted"
	case !initialized:
		notReady = "ContainersNotInitialized"
	}
	initReason := "ContainersNotInitialized"
	if finished {
		initReason = "PodCompleted"
	}
	return []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, !finished, changed, ""),
		cond(corev1.PodInitialized, initialized, changed, initReason),
		cond(corev1.PodReady, ready, changed, notReady),
		cond(corev1.ContainersReady, ready, changed, notReady),
		cond(corev1.PodScheduled, true, start, ""),
	}
}

// killedStatus is the status a kubelet reports after it stopped a deleted
// pod's containers: running ones terminated by SIGTERM, the pod Failed
// unless it had already ended.
func killedStatus(pod *corev1.Pod, now time.Time) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	t := metav1.NewTime(now)
	kill := func(specs []corev1.Container, statuses []corev1.ContainerStatus) []corev1.ContainerStatus {
		byName := map[string]corev1.ContainerStatus{}
		for _, s := range statuses {
			byName[s.Name] = s
		}
		out := make([]corev1.ContainerStatus, 0, len(specs))
		for _, c := range specs {
			s, ok := byName[c.Name]
			if !ok {
				s = corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: corev1.ContainerState{
					Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"},
				}}
			}
			if s.State.Running != nil {
				s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: ExitKilled, Reason: "Error", StartedAt: s.State.Running.StartedAt, FinishedAt: t,
				}}
			}
			s.Ready, s.Started = false, new(false)
			out = append(out, s)
		}
		return out
	}
	st.InitContainerStatuses = kill(pod.Spec.InitContainers, st.InitContainerStatuses)
	st.ContainerStatuses = kill(pod.Spec.Containers, st.ContainerStatuses)
	if st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed {
		st.Phase = corev1.PodFailed
	}
	if st.StartTime == nil {
		st.StartTime = &t
	}
	initialized := false
	for _, c := range st.Conditions {
		if c.Type == corev1.PodInitialized && c.Status == corev1.ConditionTrue {
			initialized = true
		}
	}
	st.Conditions = podConditions(*st.StartTime, t, initialized, false, true)
	return st
}

// containersStopped reports whether no container of the pod is running.
func containersStopped(pod *corev1.Pod) bool {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, s := range list {
			if s.State.Running != nil {
				return false
			}
		}
	}
	return true
}

// TargetVersion is the version an upgrade pod installs: the value of
// --to-version in its upgrade container's command or args ("" if none).
func TargetVersion(pod *corev1.Pod) string {
	containers := pod.Spec.Containers
	for _, c := range containers {
		if c.Name == UpgradeContainer {
			containers = []corev1.Container{c}
			break
		}
	}
	for _, c := range containers {
		words := append(append([]string{}, c.Command...), c.Args...)
		for i, w := range words {
			if v, ok := strings.CutPrefix(w, "--to-version="); ok {
				return v
			}
			if w == "--to-version" && i+1 < len(words) {
				return words[i+1]
			}
			// A shell script in one argument: look inside it.
			if _, after, ok := strings.Cut(w, "--to-version="); ok {
				if f := strings.Fields(after); len(f) > 0 {
					return strings.Trim(f[0], `"'`)
				}
			}
		}
	}
	return ""
}

// failureMessage is the termination message of a failing step.
func failureMessage(step, from, to string) string {
	m := TerminationMessage{Step: step, Result: "failed"}
	if step == UpgradeContainer {
		m.Reason = "simulated keadm failure"
		m.RolledBack = true
		m.FromVersion, m.ToVersion = from, to
	} else {
		m.Reason = "simulated " + step + " failure"
	}
	b, _ := json.Marshal(m) // a struct of strings always marshals
	return string(b)
}

func imageID(image string) string {
	if image == "" {
		return ""
	}
	return "docker.io/" + image + "@sha256:0000000000000000000000000000000000000000000000000000000000000000"
}
