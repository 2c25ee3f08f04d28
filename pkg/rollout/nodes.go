package rollout

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
)

// ObserveNodes fills in.Selection, in.SelectionSource and in.Nodes from the
// cluster's nodes. The controller and `kubectl nodeupgrade plan` both build
// their input here, so a plan shown to a user cannot select or skip other
// nodes than the controller will. The selection is made only while status
// has none (it is taken once); later, status.nodeStatus names the nodes. A
// selection that cannot be made is returned as an error, which the caller
// turns into a refusal.
func ObserveNodes(in *Input, job *v1alpha1.NodeUpgradeJob, nodes []corev1.Node, edgeNodeLabel string) error {
	byName := make(map[string]*corev1.Node, len(nodes))
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	var err error
	names := make([]string, 0, len(job.Status.NodeStatus))
	if !Initialized(job.Status) {
		in.Selection, in.SelectionSource, err = SelectNodes(&job.Spec, nodes)
		names = in.Selection
	} else {
		for i := range job.Status.NodeStatus {
			names = append(names, job.Status.NodeStatus[i].NodeName)
		}
	}
	canary, canaryErr := canarySelector(job)
	in.Nodes = make(map[string]NodeView, len(names))
	for _, name := range names {
		if node, ok := byName[name]; ok {
			view := ViewNode(node, edgeNodeLabel)
			view.Canary = canary != nil && canary.Matches(labels.Set(node.Labels))
			in.Nodes[name] = view
		}
	}
	if err == nil {
		err = canaryErr
	}
	return err
}

// SelectNodes applies spec.nodeNames or spec.labelSelector to the cluster's
// nodes, and names the field it used (quoted in reasons and events).
func SelectNodes(spec *v1alpha1.NodeUpgradeJobSpec, nodes []corev1.Node) ([]string, string, error) {
	if len(spec.NodeNames) > 0 {
		return spec.NodeNames, "spec.nodeNames", nil
	}
	source := "spec.labelSelector"
	if spec.LabelSelector == nil {
		return nil, source, fmt.Errorf("neither spec.nodeNames nor spec.labelSelector is set")
	}
	selector, err := metav1.LabelSelectorAsSelector(spec.LabelSelector)
	if err != nil {
		return nil, source, fmt.Errorf("spec.labelSelector: %w", err)
	}
	var names []string
	for i := range nodes {
		if selector.Matches(labels.Set(nodes[i].Labels)) {
			names = append(names, nodes[i].Name)
		}
	}
	return names, source, nil
}

// ViewNode is what the planner sees of a Node.
func ViewNode(node *corev1.Node, edgeNodeLabel string) NodeView {
	reported := node.Status.NodeInfo.KubeletVersion
	version, _ := nodeversion.Edgecore(reported)
	_, edge := node.Labels[edgeNodeLabel]
	view := NodeView{Exists: true, Edge: edge, Ready: NodeReady(node), Version: version, Reported: reported,
		Arch: node.Labels[corev1.LabelArchStable], TimeZone: node.Labels[v1alpha1.LabelTimeZone],
		OptedOut: node.Labels[v1alpha1.LabelOptOut] == "true"}
	if view.Ready {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				view.ReadySince = c.LastTransitionTime.UTC()
			}
		}
	}
	return view
}

// NodeReady reports the node's Ready condition; a node without one is not Ready.
func NodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ObjectBytes bounds the JSON size of the job without its status, for
// Input.ObjectBytes. The spec counts twice: metadata.managedFields lists its
// fields again (one per node name), and the cache drops those field sets.
func ObjectBytes(job *v1alpha1.NodeUpgradeJob) int {
	rest := v1alpha1.NodeUpgradeJob{TypeMeta: job.TypeMeta, ObjectMeta: job.ObjectMeta, Spec: job.Spec}
	whole, err1 := json.Marshal(&rest)
	spec, err2 := json.Marshal(&job.Spec)
	if err1 != nil || err2 != nil {
		return MaxObjectBytes / 2
	}
	return len(whole) + len(spec)
}
