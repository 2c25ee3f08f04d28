package framework

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/statusshard"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
)

// The versions every suite upgrades between: fleets start at FromVersion,
// jobs go to Target.
const (
	FromVersion = "v1.20.0"
	Target      = "v1.21.0"
)

// Fleet is n succeeding edge nodes prefix-00000... at FromVersion.
func Fleet(prefix string, n int) []fleetsim.NodeSpec {
	return fleetsim.Fleet(prefix, n, FromVersion)
}

// NodeNames are the specs' names, in order.
func NodeNames(specs []fleetsim.NodeSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// NewJob is a job to Target with a 60s timeout and failureTolerate 0.1,
// then changed by mutate (nil: unchanged).
func NewJob(name string, mutate func(*v1alpha1.NodeUpgradeJobSpec)) *v1alpha1.NodeUpgradeJob {
	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.NodeUpgradeJobSpec{Version: Target, TimeoutSeconds: 60, FailureTolerate: "0.1"},
	}
	if mutate != nil {
		mutate(&job.Spec)
	}
	return job
}

// GetJob reads a job with every node's entry in status.nodeStatus: a
// sharded job's are read from its shards (statusshard.Full). The job is
// written before its shards, so a read between the two is retried.
func GetJob(ctx context.Context, c client.Reader, name string) (*v1alpha1.NodeUpgradeJob, error) {
	var lastErr error
	for range 50 {
		job := &v1alpha1.NodeUpgradeJob{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, job); err != nil {
			return nil, fmt.Errorf("get job %s: %w", name, err)
		}
		full, err := statusshard.Full(ctx, c, job)
		if err == nil {
			return full, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, lastErr
}

// Final reports whether a job state is one the job never leaves.
func Final(state string) bool {
	return state == v1alpha1.StateSuccessful || state == v1alpha1.StateFailed
}

// WaitFinished polls the job every 200ms until its state is final and
// returns it then; an error when within passes (or ctx ends) first.
func WaitFinished(ctx context.Context, c client.Reader, name string, within time.Duration) (*v1alpha1.NodeUpgradeJob, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	state := ""
	for {
		if job, err := GetJob(ctx, c, name); err == nil {
			if Final(job.Status.State) {
				return job, nil
			}
			state = job.Status.State
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("job %s not finished within %s (state %q): %w", name, within, state, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NodeEntry is the job's status entry of node; false when it has none.
func NodeEntry(job *v1alpha1.NodeUpgradeJob, node string) (v1alpha1.TaskStatus, bool) {
	for _, e := range job.Status.NodeStatus {
		if e.NodeName == node {
			return e, true
		}
	}
	return v1alpha1.TaskStatus{}, false
}

// JobEvents are the reasons of the events.k8s.io events about job.
func JobEvents(ctx context.Context, c client.Reader, job *v1alpha1.NodeUpgradeJob) ([]string, error) {
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.UID == job.UID {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons, nil
}

// JobPods are the upgrade pods in namespace labelled for job.
func JobPods(ctx context.Context, c client.Reader, namespace, job string) ([]corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{v1alpha1.LabelJob: job}); err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", job, err)
	}
	return pods.Items, nil
}
