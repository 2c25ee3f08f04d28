package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// maxHistoryReason bounds the reason a node's history keeps: the
// annotation is read by every client of Nodes.
const maxHistoryReason = 256

// Each node's last upgrade is recorded on the Node itself
// (v1alpha1.AnnotationLastUpgrade), so "when was this node upgraded, and
// by what" needs no old job. It is written once per upgrade: just before
// the upgrade pod's tracking finalizer comes off, which happens once the
// job's status records the outcome and is retried until it is done. A
// node whose pod is released has its record; no reconcile writes it again.
// One merge patch of one annotation per node: nothing is read first.
//
// +kubebuilder:rbac:groups="",resources=nodes,verbs=patch

// historyEntries indexes, for the plan's releases, the node entries whose
// history is due: those that were upgraded, failed or timed out (a node
// never started changed nothing).
func historyEntries(status v1alpha1.NodeUpgradeJobStatus, cleanup []rollout.PodCleanup) map[string]*v1alpha1.TaskStatus {
	due := map[string]*v1alpha1.TaskStatus{}
	for _, c := range cleanup {
		if c.Release {
			due[c.Node] = nil
		}
	}
	if len(due) == 0 {
		return nil
	}
	for i := range status.NodeStatus {
		e := &status.NodeStatus[i]
		if _, ok := due[e.NodeName]; ok && e.Action != "" {
			due[e.NodeName] = e
		}
	}
	return due
}

// recordHistory writes a node's last upgrade. A node that is gone, or a
// role without patch on nodes (an older installation), costs the record,
// not the pod's release: it is logged and the release goes on.
func (r *Reconciler) recordHistory(ctx context.Context, job *v1alpha1.NodeUpgradeJob, pod *corev1.Pod, e *v1alpha1.TaskStatus) error {
	if e == nil {
		return nil
	}
	record := v1alpha1.NodeUpgradeRecord{Job: job.Name, From: pod.Annotations[v1alpha1.AnnotationFromVersion], To: job.Spec.Version,
		Result: e.Action, Reason: rollout.Truncate(e.Reason, maxHistoryReason), Time: r.clock.Now().UTC().Format(time.RFC3339)}
	value, err := json.Marshal(record)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.AnnotationLastUpgrade: string(value)}}})
	if err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.NodeName}}
	err = r.client.Patch(ctx, node, client.RawPatch(types.MergePatchType, patch))
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		klog.FromContext(ctx).Error(err, "Recording the node's last upgrade", "node", e.NodeName)
		return nil
	}
	return fmt.Errorf("recording node %s's last upgrade: %w", e.NodeName, err)
}
