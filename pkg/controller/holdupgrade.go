package controller

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AnnotationHoldUpgrade is KubeEdge's pod annotation (edged, v1.21+): with
// "true", the node's edged holds the pod's updates until someone runs
// `keadm ctl unhold-upgrade` on the node. This controller also reads it
// as the node's operator asking that nothing be upgraded under that pod:
// an approved node waiting for its confirmation is held while a pod on it
// carries it (Options.HonorHoldUpgrade).
const AnnotationHoldUpgrade = "edge.kubeedge.io/hold-upgrade"

// holdUpgrade returns the planner's HeldBy (rollout.Input.HeldBy): for a
// node, the first pod on it annotated with AnnotationHoldUpgrade=true, as
// "namespace/name", or why its pods could not be read (which holds it
// too: an unread hold is not a release). The planner asks only for an
// approved node waiting for its confirmation with a slot free for it, so
// this lists one node's pods, around the cache (only their metadata, by
// field selector) and only then: caching every pod of a fleet to answer
// it would cost the controller's memory more than all else it keeps.
//
// Listing pods by node needs list on pods in every namespace, which is
// more than the controller needs otherwise, so it is not among the
// markers: config/rbac/hold_upgrade (Helm: holdUpgrade.enabled) grants it
// with --honor-hold-upgrade.
func (r *Reconciler) holdUpgrade(ctx context.Context) func(node string) string {
	if !r.opts.HonorHoldUpgrade {
		return nil
	}
	return func(node string) string {
		pods := &metav1.PartialObjectMetadataList{}
		pods.APIVersion, pods.Kind = "v1", "PodList"
		if err := r.apiReader.List(ctx, pods, client.MatchingFields{"spec.nodeName": node}); err != nil {
			return fmt.Sprintf("its pods could not be read for %s: %v", AnnotationHoldUpgrade, err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Annotations[AnnotationHoldUpgrade] == "true" && p.DeletionTimestamp == nil {
				return fmt.Sprintf("pod %s/%s carries %s=true; run `keadm ctl unhold-upgrade pod %s -n %s` on the node, or remove the annotation",
					p.Namespace, p.Name, AnnotationHoldUpgrade, p.Name, p.Namespace)
			}
		}
		return ""
	}
}
