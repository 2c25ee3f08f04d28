package fleetsim

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// Exit codes the simulated kubelet shows for containers it stopped.
const (
	// ExitKilled is what a container stopped by SIGTERM on pod deletion shows.
	ExitKilled = 128 + 15
	// ExitDeadlineKilled is what a container killed at the pod's
	// activeDeadlineSeconds shows.
	ExitDeadlineKilled = 128 + 9
)

// ParseBehavior splits a behaviour annotation into what happens and in which
// container ("" = the upgrade container). Unknown values are an error.
//
//	succeed (or "")        every step passes
//	fail                   keadm upgrade fails, the rollback works (exit 3)
//	fail-rollback          keadm upgrade fails, and so does the rollback (exit 4)
//	fail-<container>       that step fails: fail-check (exit 1), fail-backup (exit 2)
//	hang, hang-<container> that container never ends
func ParseBehavior(v string) (Behavior, string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "" || v == string(BehaviorSucceed):
		return BehaviorSucceed, "", nil
	case v == string(BehaviorFail), v == string(BehaviorHang), v == string(BehaviorFailRollback):
		return Behavior(v), "", nil
	case strings.HasPrefix(v, string(BehaviorFail)+"-"):
		return BehaviorFail, strings.TrimPrefix(v, string(BehaviorFail)+"-"), nil
	case strings.HasPrefix(v, string(BehaviorHang)+"-"):
		return BehaviorHang, strings.TrimPrefix(v, string(BehaviorHang)+"-"), nil
	}
	return BehaviorSucceed, "", fmt.Errorf("fleetsim: unknown behavior %q", v)
}

// phase is a stretch of a pod's run during which one container runs.
type phase struct {
	ordinal int // init containers first, then the main containers, in spec order
	begin   time.Time
}

// ending is how and when a pod's run ends.
type ending struct {
	at      time.Time
	ordinal int // the container whose exit ends the pod
	exit    int32
	message string // its termination message
	// podReason is set when the kubelet, not a container, ended the pod.
	podReason, podMessage string
}

// timeline is one upgrade pod's life, computed from the pod, the node
// and the clock at its start. Its init container (copy-keadm) runs first;
// then its main containers, the runner's steps, all start, and each works
// once the one before it has succeeded, as the real runner hands over
// through its records on the host. Progress counts phases: 0 not started,
// 1+i phase i showing, done() ended.
type timeline struct {
	start    time.Time
	nInit    int
	names    []string // container name per ordinal
	phases   []phase
	hang     bool // no ending: the last phase goes on forever
	end      ending
	reports  []string    // termination message of each ordinal that ran to success
	finished []time.Time // when each ordinal that ran to success ended
}

// timelineInput is what a timeline depends on besides the pod.
type timelineInput struct {
	start       time.Time
	duration    time.Duration
	behavior    Behavior
	at          string // container the behaviour applies to; "" = upgrade
	nodeVersion string // edgecore version the node reports
	// nodeBusyUntil is when the runner of a deleted pod leaves the node
	// (AnnotationRunnerBusyUntil): this pod's first step waits for the node
	// lock until then.
	nodeBusyUntil time.Time
}

// stepWeight shares the pod's duration among its containers: copying keadm
// is quick, the upgrade itself the longest part.
func stepWeight(name string) int {
	switch name {
	case runner.ContainerCopyKeadm:
		return 1
	case runner.ContainerUpgrade:
		return 5
	}
	return 2
}

// isRunnerStep reports whether a container runs nodeupgrade-runner, which
// checks the deadline and the node's version and writes a JSON report.
func isRunnerStep(name string) bool {
	switch name {
	case runner.ContainerCheck, runner.ContainerBackup, runner.ContainerUpgrade:
		return true
	}
	return false
}

func newTimeline(pod *corev1.Pod, in timelineInput) timeline {
	p := timeline{start: in.start, nInit: len(pod.Spec.InitContainers)}
	for _, c := range pod.Spec.InitContainers {
		p.names = append(p.names, c.Name)
	}
	upgradeAt := -1
	for _, c := range pod.Spec.Containers {
		if c.Name == runner.ContainerUpgrade {
			upgradeAt = len(p.names)
		}
		p.names = append(p.names, c.Name)
	}
	if upgradeAt < 0 {
		// Not a pod pkg/upgradepod built: play its last container as the
		// upgrade.
		upgradeAt = len(p.names) - 1
		if upgradeAt < 0 {
			p.names, upgradeAt = []string{runner.ContainerUpgrade}, 0
		}
	}
	last := len(p.names) - 1
	target := TargetVersion(pod)
	from := in.nodeVersion
	if from == "" {
		from = argValue(pod, "--from-version")
	}
	// The runner does not skip a node already at the target (it cannot ask
	// edgecore its version without starting a second edgecore, seen on a
	// real node); the controller does not dispatch such nodes.
	failAt, hangAt := -1, -1
	stopAt := upgradeAt
	for i, name := range p.names {
		if in.at != "" && name == in.at {
			stopAt = i
		}
	}
	switch in.behavior {
	case BehaviorFail, BehaviorFailRollback:
		failAt = stopAt
	case BehaviorHang:
		hangAt = stopAt
	}

	// Lay the phases out over the duration by weight. A failing upgrade
	// rolls back inside its upgrade container with no sign in the pod
	// status, as on real KubeEdge (see upgradepod.Build).
	total := 0
	for _, n := range p.names {
		total += stepWeight(n)
	}
	at := func(acc float64) time.Time {
		return in.start.Add(time.Duration(float64(in.duration) * acc / float64(total)))
	}
	acc := 0.0
	var bounds []time.Time // bounds[o] is when ordinal o begins; one more for the end
	for o, n := range p.names {
		bounds = append(bounds, at(acc))
		p.phases = append(p.phases, phase{ordinal: o, begin: at(acc)})
		acc += float64(stepWeight(n))
	}
	bounds = append(bounds, in.start.Add(in.duration))
	// The first step holds on the node lock while another pod's runner is
	// still on the node: it shows running, and it and every step after it
	// finish that much later.
	if p.nInit < len(p.names) && in.nodeBusyUntil.After(bounds[p.nInit]) {
		wait := in.nodeBusyUntil.Sub(bounds[p.nInit])
		for o := p.nInit + 1; o < len(bounds); o++ {
			bounds[o] = bounds[o].Add(wait)
			if o < len(p.phases) {
				p.phases[o].begin = bounds[o]
			}
		}
	}

	base := runner.Report{FromVersion: from, ToVersion: target}
	deadline, hasDeadline := podDeadline(pod)
	p.end = ending{at: bounds[last+1], ordinal: last}
	cut, stopped := len(p.phases), false
	for i, ph := range p.phases {
		o, name := ph.ordinal, p.names[ph.ordinal]
		// A step still waiting for the node lock at the deadline gives up.
		if hasDeadline && o == p.nInit && isRunnerStep(name) && in.nodeBusyUntil.After(ph.begin) && !in.nodeBusyUntil.Before(deadline) && ph.begin.Before(deadline) {
			rep := base
			rep.Step, rep.Result = runner.Step(name), runner.ResultFailed
			rep.Reason = "nothing was run: another job's upgrade step on this node still holds the node lock (simulated)"
			p.end = ending{at: deadline, ordinal: o, exit: runner.ExitDeadline, message: string(rep.Marshal())}
			cut, stopped = i+1, true
			break
		}
		// The runner refuses to start a step once the deadline has passed.
		if hasDeadline && isRunnerStep(name) && !ph.begin.Before(deadline) {
			rep := base
			rep.Step, rep.Result = runner.Step(name), runner.ResultFailed
			rep.Reason = fmt.Sprintf("deadline %s passed before step %s started (now %s); nothing was run",
				deadline.UTC().Format(time.RFC3339), name, ph.begin.UTC().Format(time.RFC3339))
			p.end = ending{at: ph.begin, ordinal: o, exit: runner.ExitDeadline, message: string(rep.Marshal())}
			cut, stopped = i, true
			break
		}
		if o == hangAt {
			p.hang = true
			cut, stopped = i+1, true
			break
		}
		if o == failAt {
			p.end = p.failure(o, bounds[o+1], base, in.behavior == BehaviorFailRollback)
			cut, stopped = i+1, true
			break
		}
		p.reports = append(p.reports, p.successReport(name, base))
		p.finished = append(p.finished, bounds[o+1])
	}
	p.phases = p.phases[:cut]
	if !stopped {
		// Success: the last report is the upgrade container's.
		p.end.message = p.reports[len(p.reports)-1]
		p.reports = p.reports[:len(p.reports)-1]
		p.finished = p.finished[:len(p.finished)-1]
	}

	// The kubelet kills a pod that outlives activeDeadlineSeconds.
	if ads := pod.Spec.ActiveDeadlineSeconds; ads != nil {
		killAt := in.start.Add(time.Duration(*ads) * time.Second)
		if p.hang || killAt.Before(p.end.at) {
			running := p.phases[len(p.phases)-1].ordinal
			for i, ph := range p.phases {
				if i > 0 && !ph.begin.Before(killAt) {
					p.phases, running = p.phases[:i], p.phases[i-1].ordinal
					break
				}
			}
			p.reports, p.finished = p.reports[:min(len(p.reports), running)], p.finished[:min(len(p.finished), running)]
			p.hang = false
			p.end = ending{
				at: killAt, ordinal: running, exit: ExitDeadlineKilled,
				podReason: "DeadlineExceeded", podMessage: "Pod was active on the node longer than the specified deadline",
			}
		}
	}
	return p
}

// failure is the ending of a pod whose container o fails at t.
func (p timeline) failure(o int, t time.Time, base runner.Report, rollbackFails bool) ending {
	name := p.names[o]
	rep := base
	rep.Step, rep.Result = runner.Step(name), runner.ResultFailed
	e := ending{at: t, ordinal: o}
	switch name {
	case runner.ContainerCopyKeadm:
		e.exit = 1
		e.message = "cp: can't stat '/usr/local/bin/keadm': No such file or directory (simulated)"
		return e
	case runner.ContainerCheck:
		e.exit = runner.ExitCheckFailed
		rep.Reason = "check failed: disk usage 97% is over the 80% threshold (simulated)"
	case runner.ContainerBackup:
		e.exit = runner.ExitBackupFailed
		rep.Reason = "backup failed: simulated keadm backup failure"
	case runner.ContainerUpgrade:
		up := fmt.Sprintf("upgrade to %s failed: simulated keadm failure", base.ToVersion)
		rep.Step = runner.StepRollback
		if rollbackFails {
			e.exit = runner.ExitNeedsAttention
			rep.NeedsAttention = true
			rep.Reason = "rollback failed too, the node needs attention: simulated keadm rollback failure\n" + up
		} else {
			e.exit = runner.ExitRolledBack
			rep.RolledBack = true
			rep.Reason = fmt.Sprintf("rollback succeeded, the node is back on %s; %s", orUnknown(base.FromVersion), up)
		}
	default:
		e.exit = 1
		rep.Reason = "simulated failure of " + name
	}
	e.message = string(rep.Marshal())
	return e
}

// successReport is the termination message of a container that succeeded.
func (p timeline) successReport(name string, base runner.Report) string {
	if !isRunnerStep(name) {
		return ""
	}
	rep := base
	rep.Step, rep.Result = runner.Step(name), runner.ResultSucceeded
	switch name {
	case runner.ContainerCheck:
		rep.Reason = "cpu 12% <= 80%, mem 35% <= 80%, disk 41% <= 80% (simulated)"
	case runner.ContainerBackup:
		rep.Reason = "backup done"
	case runner.ContainerUpgrade:
		rep.Reason = fmt.Sprintf("upgraded edgecore from %s to %s", orUnknown(base.FromVersion), base.ToVersion)
	}
	return string(rep.Marshal())
}

func orUnknown(v string) string {
	if v == "" {
		return "an unknown version"
	}
	return v
}

func (p timeline) done() int { return len(p.phases) + 1 }

// succeeds reports whether the pod ends Succeeded.
func (p timeline) succeeds() bool { return !p.hang && p.end.exit == 0 && p.end.podReason == "" }

// progressAt is the progress the pod should show at t.
func (p timeline) progressAt(t time.Time) int {
	if !p.hang && !t.Before(p.end.at) {
		return p.done()
	}
	progress := 0
	for i, ph := range p.phases {
		if !t.Before(ph.begin) {
			progress = i + 1
		}
	}
	return max(progress, 1)
}

// nextChange is when progressAt changes after t; ok is false when it never
// does (ended, or hung).
func (p timeline) nextChange(t time.Time) (time.Time, bool) {
	cur := p.progressAt(t)
	switch {
	case cur == p.done():
		return time.Time{}, false
	case cur < len(p.phases):
		return p.phases[cur].begin, true
	case p.hang:
		return time.Time{}, false
	}
	return p.end.at, true
}

// progressOf reads how far a pod got from its status, in p's phases.
func (p timeline) progressOf(pod *corev1.Pod) int {
	switch {
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return p.done()
	case pod.Status.StartTime == nil:
		return 0
	}
	// The running ordinal is the first container, in run order, that has
	// not exited 0.
	ordinal := 0
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, name := range p.names {
		var s *corev1.ContainerStatus
		for i := range statuses {
			if statuses[i].Name == name {
				s = &statuses[i]
			}
		}
		if s == nil || s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			break
		}
		ordinal++
	}
	progress := 1
	for i, ph := range p.phases {
		if ph.ordinal <= ordinal {
			progress = i + 1
		}
	}
	return progress
}

// podStatus is the status a kubelet would report at progress.
func (p timeline) podStatus(pod *corev1.Pod, progress int) corev1.PodStatus {
	ts := metav1.NewTime
	ended := progress >= p.done()
	cur := phase{ordinal: p.end.ordinal, begin: p.end.at}
	if len(p.phases) > 0 {
		cur = p.phases[min(max(progress, 1), len(p.phases))-1]
	}
	running := cur.ordinal
	if ended {
		running = p.end.ordinal
	}
	// begins[o] is when ordinal o started running.
	begins := map[int]time.Time{}
	for _, ph := range p.phases {
		if _, ok := begins[ph.ordinal]; !ok {
			begins[ph.ordinal] = ph.begin
		}
	}
	if _, ok := begins[p.end.ordinal]; !ok {
		begins[p.end.ordinal] = p.end.at
	}
	stepsStarted := running >= p.nInit
	state := func(o int) corev1.ContainerState {
		switch {
		case o < running || (ended && o == running && p.end.exit == 0 && p.end.podReason == ""):
			// Finished successfully.
			t := &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: ts(begins[o])}
			if o < len(p.reports) {
				t.Message, t.FinishedAt = p.reports[o], ts(p.finished[o])
			} else {
				t.Message, t.FinishedAt = p.end.message, ts(p.end.at)
			}
			return corev1.ContainerState{Terminated: t}
		case o == running && ended:
			reason := "Error"
			return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: p.end.exit, Reason: reason, Message: p.end.message,
				StartedAt: ts(begins[o]), FinishedAt: ts(p.end.at),
			}}
		case o == running:
			return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ts(begins[o])}}
		case stepsStarted && o >= p.nInit && ended:
			// A step after the one that ended the pod: the runner exits
			// without doing anything, or the kubelet killed it with the pod.
			t := &corev1.ContainerStateTerminated{ExitCode: runner.ExitNotRun, Reason: "Error", StartedAt: ts(begins[p.nInit]), FinishedAt: ts(p.end.at)}
			if p.end.podReason != "" {
				t.ExitCode = ExitDeadlineKilled
			} else {
				rep := runner.Report{Step: runner.Step(p.names[o]), Result: runner.ResultFailed,
					Reason: fmt.Sprintf("not run: step %s failed (exit %d)", p.names[running], p.end.exit)}
				t.Message = string(rep.Marshal())
			}
			return corev1.ContainerState{Terminated: t}
		case stepsStarted && o >= p.nInit:
			// Started with the others, waiting for the step before it.
			return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ts(begins[p.nInit])}}
		}
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	}

	st := corev1.PodStatus{StartTime: new(ts(p.start))}
	for i, c := range pod.Spec.InitContainers {
		s := state(i)
		st.InitContainerStatuses = append(st.InitContainerStatuses, containerStatus(c, s, s.Terminated != nil && s.Terminated.ExitCode == 0))
	}
	// The upgrade pod has no readiness probe, so a running container is
	// Ready, as the kubelet (and edgecore) report it by default; the pod is
	// Ready while all of them run.
	podReady := !ended
	for i, c := range pod.Spec.Containers {
		s := state(p.nInit + i)
		st.ContainerStatuses = append(st.ContainerStatuses, containerStatus(c, s, s.Running != nil))
		podReady = podReady && s.Running != nil
	}

	initialized := stepsStarted
	switch {
	case ended && p.succeeds():
		st.Phase = corev1.PodSucceeded
	case ended:
		st.Phase = corev1.PodFailed
		st.Reason, st.Message = p.end.podReason, p.end.podMessage
	case stepsStarted:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	changed := cur.begin
	if ended {
		changed = p.end.at
	}
	st.Conditions = podConditions(ts(p.start), ts(changed), initialized, podReady, ended)
	return st
}

func containerStatus(c corev1.Container, s corev1.ContainerState, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: c.Name, Image: c.Image, ImageID: imageID(c.Image),
		State: s, Ready: ready, Started: new(s.Running != nil),
	}
}

func podConditions(start, changed metav1.Time, initialized, ready, ended bool) []corev1.PodCondition {
	cond := func(t corev1.PodConditionType, ok bool, at metav1.Time, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: at, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		return c
	}
	notReady := "ContainersNotReady"
	switch {
	case ended:
		notReady = "PodCompleted"
	case !initialized:
		notReady = "ContainersNotInitialized"
	}
	return []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, !ended, changed, ""),
		cond(corev1.PodInitialized, initialized, changed, "ContainersNotInitialized"),
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
func TargetVersion(pod *corev1.Pod) string { return argValue(pod, "--to-version") }

// argValue finds flag's value in the upgrade container's command line, as
// "--flag=v", "--flag v", or inside a shell script argument.
func argValue(pod *corev1.Pod, flag string) string {
	containers := pod.Spec.Containers
	for _, c := range containers {
		if c.Name == runner.ContainerUpgrade {
			containers = []corev1.Container{c}
			break
		}
	}
	for _, c := range containers {
		words := append(append([]string{}, c.Command...), c.Args...)
		for i, w := range words {
			if v, ok := strings.CutPrefix(w, flag+"="); ok {
				return v
			}
			if w == flag && i+1 < len(words) {
				return words[i+1]
			}
			if _, after, ok := strings.Cut(w, flag+"="); ok {
				if f := strings.Fields(after); len(f) > 0 {
					return strings.Trim(f[0], `"'`)
				}
			}
		}
	}
	return ""
}

// podDeadline is the instant after which no runner step may start: the
// pod's deadline annotation, else the upgrade container's --deadline.
func podDeadline(pod *corev1.Pod) (time.Time, bool) {
	v := pod.Annotations[v1alpha1.AnnotationDeadline]
	if v == "" {
		v = argValue(pod, "--deadline")
	}
	if v == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

func imageID(image string) string {
	if image == "" {
		return ""
	}
	return "docker.io/" + image + "@sha256:0000000000000000000000000000000000000000000000000000000000000000"
}
