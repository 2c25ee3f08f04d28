// Package fleetsim simulates a fleet of KubeEdge edge nodes for tests, the
// demo and benchmarks: it creates fake nodes (which KWOK, run by package
// test/kwokworld, keeps Ready) and runs the upgrade pods the controller binds
// to them, playing the part of the edge node's kubelet and of keadm.
//
// How a node's upgrade goes is told by annotations on the node, so a test
// can change it at any time:
//
//	nodeupgrade.test/behavior: ""|succeed, fail, fail-rollback, fail-<container>, hang, hang-<container>
//	nodeupgrade.test/offline:  "true" (no kubelet: pods never start nor stop)
//	nodeupgrade.test/duration: a Go duration ("5s") for the whole upgrade pod
package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
	"github.com/nodeupgrade/nodeupgrade/test/kwokworld"
)

const (
	// AnnotationFakeNode marks a node KWOK manages (value FakeNodeValue);
	// kwokworld, which configures KWOK, owns it.
	AnnotationFakeNode = kwokworld.AnnotationFakeNode
	// FakeNodeValue is AnnotationFakeNode's value on simulated nodes.
	FakeNodeValue = kwokworld.FakeNodeValue
	// AnnotationBehavior tells how upgrades on the node end; see Behavior.
	AnnotationBehavior = "nodeupgrade.test/behavior"
	// AnnotationOffline set to "true" makes the node unreachable (and
	// kwokworld's stages keep it NotReady).
	AnnotationOffline = kwokworld.AnnotationOffline
	// AnnotationDuration overrides Options.UpgradeDuration for the node.
	AnnotationDuration = "nodeupgrade.test/duration"
	// AnnotationRunnerBusyUntil (RFC 3339, nanoseconds) is when the runner
	// of a pod deleted in its upgrade step leaves the node: on real KubeEdge
	// edgecore confirms the deletion at once while the runner still kills
	// keadm and rolls back, holding the node lock; the next pod's steps
	// wait for it. The simulator sets it; it is kept on the node so that a
	// restarted simulator sees it too.
	AnnotationRunnerBusyUntil = "nodeupgrade.test/runner-busy-until"

	// LabelEdgeRole is the role label keadm puts on KubeEdge edge nodes.
	LabelEdgeRole = "node-role.kubernetes.io/edge"
	// LabelAgentRole is the second role label keadm puts on edge nodes.
	LabelAgentRole = "node-role.kubernetes.io/agent"
	// TaintEdge keeps ordinary workloads off edge nodes, as in KubeEdge setups.
	TaintEdge = "node-role.kubernetes.io/edge"

	// DefaultKubeletVersion is the Kubernetes part of the version an edge
	// node reports: kubeletVersion is "<kubelet>-kubeedge-<edgecore>".
	DefaultKubeletVersion = "v1.30.7"
	// DefaultVersion is the edgecore version of a new simulated node.
	DefaultVersion = "v1.20.0"

	kubeEdgeInfix = "-kubeedge-"
)

// Behavior is how an upgrade pod on a node ends.
type Behavior string

const (
	// BehaviorSucceed runs every container to completion; the node then
	// reports the target version.
	BehaviorSucceed Behavior = "succeed"
	// BehaviorFail makes keadm upgrade fail and the rollback work: the
	// upgrade container runs for a while (the rollback), then exits 3 with
	// a runner report {"step":"rollback","result":"failed","rolledBack":true}.
	// "fail-<container>" fails that step instead: fail-check (exit 1),
	// fail-backup (exit 2), fail-copy-keadm.
	BehaviorFail Behavior = "fail"
	// BehaviorFailRollback makes the rollback fail too: exit 4, needsAttention.
	BehaviorFailRollback Behavior = "fail-rollback"
	// BehaviorHang leaves the upgrade container running until the pod is
	// deleted or its activeDeadlineSeconds runs out. "hang-<container>"
	// hangs in that container instead.
	BehaviorHang Behavior = "hang"
)

// NodeSpec describes one simulated edge node.
type NodeSpec struct {
	Name string
	// Labels are added to the node's labels.
	Labels map[string]string
	// Annotations are added to the node's annotations.
	Annotations map[string]string
	// Version is the edgecore version the node reports. Empty: DefaultVersion.
	Version string
	// KubeletVersion is the Kubernetes part of the reported version. Empty:
	// DefaultKubeletVersion.
	KubeletVersion string
	// Behavior sets AnnotationBehavior. Empty: succeed.
	Behavior Behavior
	// Offline sets AnnotationOffline=true.
	Offline bool
	// Duration sets AnnotationDuration. Zero: the simulator's default.
	Duration time.Duration
	// NotEdge leaves out the edge role labels and taint: a cloud node.
	NotEdge bool
}

// ReportedVersion is the kubeletVersion a KubeEdge node running edgecore
// version kubeedge reports, e.g. "v1.30.7-kubeedge-v1.20.0".
func ReportedVersion(kubelet, kubeedge string) string {
	if kubelet == "" {
		kubelet = DefaultKubeletVersion
	}
	return kubelet + kubeEdgeInfix + kubeedge
}

// NodeVersion is the edgecore version a node reports, read as the
// controller reads it (nodeversion.Edgecore); "" when there is none.
func NodeVersion(node *corev1.Node) string {
	v, _ := nodeversion.Edgecore(node.Status.NodeInfo.KubeletVersion)
	return v
}

// withKubeEdgeVersion replaces the edgecore part of a kubeletVersion.
func withKubeEdgeVersion(kubeletVersion, kubeedge string) string {
	kubelet, _, ok := strings.Cut(kubeletVersion, kubeEdgeInfix)
	if !ok || kubelet == "" {
		kubelet = DefaultKubeletVersion
	}
	return ReportedVersion(kubelet, kubeedge)
}

// Fleet returns n succeeding nodes named <prefix>-00000 … at version.
func Fleet(prefix string, n int, version string) []NodeSpec {
	specs := make([]NodeSpec, n)
	for i := range specs {
		specs[i] = NodeSpec{Name: fmt.Sprintf("%s-%05d", prefix, i), Version: version}
	}
	return specs
}

// Node builds the Node object for the spec, status included.
func (s NodeSpec) Node() *corev1.Node {
	version := s.Version
	if version == "" {
		version = DefaultVersion
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        s.Name,
			Labels:      map[string]string{"kubernetes.io/hostname": s.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
			Annotations: map[string]string{AnnotationFakeNode: FakeNodeValue},
		},
		Status: corev1.NodeStatus{
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          ReportedVersion(s.KubeletVersion, version),
				ContainerRuntimeVersion: "containerd://1.7.24",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
				OSImage:                 "Ubuntu 22.04.5 LTS",
				KernelVersion:           "5.15.0-fake",
			},
		},
	}
	if !s.NotEdge {
		node.Labels[LabelEdgeRole] = ""
		node.Labels[LabelAgentRole] = ""
		node.Spec.Taints = []corev1.Taint{{Key: TaintEdge, Effect: corev1.TaintEffectNoSchedule}}
	}
	for k, v := range s.Labels {
		node.Labels[k] = v
	}
	for k, v := range s.Annotations {
		node.Annotations[k] = v
	}
	if s.Behavior != "" {
		node.Annotations[AnnotationBehavior] = string(s.Behavior)
	}
	if s.Offline {
		node.Annotations[AnnotationOffline] = "true"
	}
	if s.Duration > 0 {
		node.Annotations[AnnotationDuration] = s.Duration.String()
	}
	return node
}

// CreateNodes creates the nodes with workers parallel requests (at least 1).
// Each node's status (the reported version) is written right after the node,
// since the apiserver does not take status from a create. A node that exists
// already is an error, so a test never runs on a fleet it did not make.
func CreateNodes(ctx context.Context, c client.Client, specs []NodeSpec, workers int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, workers))
	for _, spec := range specs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return createNode(gctx, c, spec) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fleetsim: create nodes: %w", err)
	}
	return nil
}

func createNode(ctx context.Context, c client.Client, spec NodeSpec) error {
	node := spec.Node()
	status := node.Status
	if err := c.Create(ctx, node); err != nil {
		return fmt.Errorf("fleetsim: create node %s: %w", spec.Name, err)
	}
	// The apiserver may drop status on create; then write it at once, so the
	// reported version is there before KWOK's first stage and the controller
	// never sees a node without one for long.
	if node.Status.NodeInfo.KubeletVersion == status.NodeInfo.KubeletVersion {
		return nil
	}
	patch := client.MergeFrom(node.DeepCopy())
	node.Status.NodeInfo = status.NodeInfo
	if err := c.Status().Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("fleetsim: write status of node %s: %w", spec.Name, err)
	}
	return nil
}

// SetBehavior changes how later upgrades on a node end ("" = succeed).
func SetBehavior(ctx context.Context, c client.Client, node string, b Behavior) error {
	return setAnnotation(ctx, c, node, AnnotationBehavior, string(b))
}

// SetOffline takes a node's edgecore away (true) or brings it back (false).
func SetOffline(ctx context.Context, c client.Client, node string, offline bool) error {
	v := ""
	if offline {
		v = "true"
	}
	return setAnnotation(ctx, c, node, AnnotationOffline, v)
}

// SetDuration changes how long later upgrade pods on a node run (0 = default).
func SetDuration(ctx context.Context, c client.Client, node string, d time.Duration) error {
	v := ""
	if d > 0 {
		v = d.String()
	}
	return setAnnotation(ctx, c, node, AnnotationDuration, v)
}

// SetVersion makes a node report edgecore version v, as if someone upgraded
// it by hand.
func SetVersion(ctx context.Context, c client.Client, name, v string) error {
	node := &corev1.Node{}
	if err := c.Get(ctx, types.NamespacedName{Name: name}, node); err != nil {
		return fmt.Errorf("fleetsim: get node %s: %w", name, err)
	}
	patch := client.MergeFrom(node.DeepCopy())
	node.Status.NodeInfo.KubeletVersion = withKubeEdgeVersion(node.Status.NodeInfo.KubeletVersion, v)
	if err := c.Status().Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("fleetsim: set version of node %s: %w", name, err)
	}
	return nil
}

// setAnnotation sets (or, for "", removes) one annotation with a merge patch.
func setAnnotation(ctx context.Context, c client.Client, name, key, value string) error {
	var v any = value
	if value == "" {
		v = nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: v}}})
	if err != nil {
		return fmt.Errorf("fleetsim: annotation patch: %w", err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Patch(ctx, node, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("fleetsim: node %s: %w", name, err)
		}
		return fmt.Errorf("fleetsim: annotate node %s %s=%q: %w", name, key, value, err)
	}
	return nil
}
