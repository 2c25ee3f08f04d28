package rollout

import (
	"fmt"
	"strings"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// PullState is what an upgrade pod's image pulls say before any of its
// steps has started.
type PullState string

const (
	// PullOK: no pull has failed (or the pod is past its pulls).
	PullOK PullState = ""
	// PullRetrying: a pull failed in a way that may pass (the registry
	// unreachable or overloaded, a timeout); the kubelet tries again, and the
	// node waits, within its timeout, with the runtime's words as its reason.
	PullRetrying PullState = "Retrying"
	// PullBackOff: the kubelet waits before it pulls again. Its message
	// names the error before it only from KubeEdge v1.23's kubelet on
	// (v1.22 and older say just "Back-off pulling image"), so a back-off
	// does not replace the reason an earlier pull error gave.
	PullBackOff PullState = "BackOff"
	// PullRefused: the registry answered that the image is not there or that
	// the node may not pull it (no such tag, no such repository, no or wrong
	// credentials), or the reference cannot be pulled at all. Waiting cannot
	// help, and nothing on the node has changed, so the node fails at once
	// instead of waiting out its timeout.
	PullRefused PullState = "Refused"
)

// followPull handles an in-flight node whose pod waits on an image pull
// and reports whether it did: a refused pull fails the node now; a pull
// that may still succeed leaves the node in its state, with the runtime's
// words as its reason, until it succeeds or the deadline passes.
func (p *planner) followPull(e *v1alpha1.TaskStatus, pod PodView) bool {
	switch pod.Pull {
	case PullRefused:
		p.fail(e, failure{at: v1alpha1.EventInit, why: pullRefusedPrefix + pod.Reason})
		return true
	case PullRetrying, PullBackOff:
		e.State, e.Event = phaseState(pod.Phase)
		if pod.Pull == PullRetrying || !strings.HasPrefix(e.Reason, pullWaitPrefix) {
			e.Reason = pullWaitPrefix + pod.Reason
		}
		return true
	}
	return false
}

// The reasons of a node whose pod waits on a pull, and of one whose pull
// the registry refused, start with these. A node's reason holds 256 bytes
// (MaxNodeReasonBytes): the runtime's words need the room.
const (
	pullWaitPrefix    = "waiting for an image pull: "
	pullRefusedPrefix = "image pull refused, nothing on the node changed: "
)

// timeoutReason is the reason of a node that ran out of time: the step its
// pod was seen in, and what it was waiting for if the last plan recorded
// that (a pull, say).
func (p *planner) timeoutReason(e *v1alpha1.TaskStatus, last string) string {
	reason := fmt.Sprintf("did not finish within %s (last seen: %s", p.in.Config.Timeout, last)
	if strings.HasPrefix(e.Reason, pullWaitPrefix) {
		reason += "; " + e.Reason
	}
	return reason + ")"
}
