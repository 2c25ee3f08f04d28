package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/statusshard"
)

// The reconcile harness runs one Reconcile at a time against
// controller-runtime's fake client, as Karpenter's pkg/test/expectations
// does: no API server, no cache, no manager. Every write the reconciler
// makes passes through interceptor.Funcs, which log it in order, with what
// the stored job said about the pod's node at that instant, and may refuse
// it. What these tests prove about order and refusals holds for the
// reconciler's code; test/integration proves the same on a real API server.

const (
	fromVersion = "v1.21.0"
	toVersion   = "v1.22.0"
)

// write is one write the reconciler made (or tried to make).
type write struct {
	// Verb is create, patch, delete or "patch status".
	Verb string
	// Kind is Pod or NodeUpgradeJob.
	Kind string
	// Node is the pod's node; "" for the job.
	Node string
	// Committed is the pod's node's state in the stored job's status when
	// the write was made ("" for a write to the job, or a node with no entry).
	Committed string
	// Own is set for a write to a pod the job owns (its controller
	// reference): the order checks are about the job's own pods.
	Own bool
	// Refused is set when refuse turned the write down.
	Refused bool
}

type harness struct {
	t   *testing.T
	ctx context.Context
	// api is the fake API server's state, read and written around the
	// interceptors (what the runner, the kubelet and the user do).
	api    client.WithWatch
	r      *Reconciler
	clock  *clocktesting.FakeClock
	events *events.FakeRecorder
	job    string
	jobUID types.UID
	// writes are the writes of the last reconcile, in order (pod writes
	// run in parallel: mu guards the log).
	mu     sync.Mutex
	writes []write
	// refuse, when set, may turn down a write: its error is what the
	// reconciler gets, and nothing is written.
	refuse func(write) error
	// staleCache, when set, makes the reconciler's cached reads of the job
	// return this resourceVersion instead of the stored one.
	staleCache string
	// requests are every API request the reconciler's reads and writes
	// cost, as RBAC sees them, since the harness was built.
	requests map[request]bool
}

// request is one API request as RBAC authorises it: a verb on a resource
// ("pods", "nodeupgradejobs/status") in a namespace ("" cluster-wide).
type request struct{ Verb, Resource, Namespace string }

// request records the requests a read or write of obj (or list) costs.
func (h *harness) request(obj runtime.Object, namespace string, verbs ...string) {
	h.requestResource(h.resource(obj), namespace, verbs...)
}

func (h *harness) requestResource(resource, namespace string, verbs ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range verbs {
		h.requests[request{Verb: v, Resource: resource, Namespace: namespace}] = true
	}
}

// resource is obj's resource as RBAC names it: group/plural.
func (h *harness) resource(obj runtime.Object) string {
	gvk, err := apiutil.GVKForObject(obj, testScheme)
	if err != nil {
		h.t.Fatalf("resource of %T: %v", obj, err)
	}
	gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
	mapping, err := h.api.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		h.t.Fatalf("resource of %s: %v", gvk, err)
	}
	return mapping.Resource.Group + "/" + mapping.Resource.Resource
}

func listNamespace(opts []client.ListOption) string {
	lo := &client.ListOptions{}
	lo.ApplyOptions(opts)
	return lo.Namespace
}

var testScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// testRESTMapper knows the kinds the reconciler touches, each with its
// real scope: the fake client's default takes every kind as namespaced.
var testRESTMapper = func() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(v1alpha1.GroupVersion.WithKind("NodeUpgradeJob"), meta.RESTScopeRoot)
	m.Add(corev1.SchemeGroupVersion.WithKind("Node"), meta.RESTScopeRoot)
	m.Add(corev1.SchemeGroupVersion.WithKind("Pod"), meta.RESTScopeNamespace)
	m.Add(corev1.SchemeGroupVersion.WithKind("ConfigMap"), meta.RESTScopeNamespace)
	m.Add(coordinationv1.SchemeGroupVersion.WithKind("Lease"), meta.RESTScopeNamespace)
	m.Add(eventsv1.SchemeGroupVersion.WithKind("Event"), meta.RESTScopeNamespace)
	return m
}()

// newHarness stores job and nodes in a fake API and builds a Reconciler on
// it with the default options (writes not coalesced) changed by adjust.
func newHarness(t *testing.T, job *v1alpha1.NodeUpgradeJob, nodes []*corev1.Node, adjust func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, ctx: context.Background(), job: job.Name, jobUID: job.UID, requests: map[request]bool{},
		clock:  clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
		events: events.NewFakeRecorder(1000)}
	objs := []client.Object{job}
	for _, n := range nodes {
		objs = append(objs, n)
	}
	h.api = fake.NewClientBuilder().WithScheme(testScheme).WithRESTMapper(testRESTMapper).WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.NodeUpgradeJob{}, &corev1.Pod{}).Build()
	// The reconciler's Client stands for the manager's: reads from the
	// informer cache (which lists and watches), writes to the API server.
	cached := interceptor.NewClient(h.api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			h.request(obj, key.Namespace, "list", "watch")
			err := c.Get(ctx, key, obj, opts...)
			if _, isJob := obj.(*v1alpha1.NodeUpgradeJob); isJob && err == nil && h.staleCache != "" {
				obj.SetResourceVersion(h.staleCache)
			}
			return err
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			h.request(list, listNamespace(opts), "list", "watch")
			return c.List(ctx, list, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			h.request(obj, obj.GetNamespace(), "create")
			for _, ref := range obj.GetOwnerReferences() {
				if ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
					// The API server's OwnerReferencesPermissionEnforcement:
					// blocking the owner's deletion takes update on its finalizers.
					h.requestResource(v1alpha1.GroupVersion.Group+"/nodeupgradejobs/finalizers", "", "update")
				}
			}
			return h.intercept(obj, "create", func() error { return c.Create(ctx, obj, opts...) })
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			h.request(obj, obj.GetNamespace(), "patch")
			return h.intercept(obj, "patch", func() error { return c.Patch(ctx, obj, patch, opts...) })
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			h.request(obj, obj.GetNamespace(), "update")
			return h.intercept(obj, "update", func() error { return c.Update(ctx, obj, opts...) })
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			h.request(obj, obj.GetNamespace(), "delete")
			return h.intercept(obj, "delete", func() error { return c.Delete(ctx, obj, opts...) })
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			h.requestResource(h.resource(obj)+"/"+sub, obj.GetNamespace(), "patch")
			return h.intercept(obj, "patch "+sub, func() error { return c.SubResource(sub).Patch(ctx, obj, patch, opts...) })
		},
	})
	// The APIReader reads the API server directly.
	direct := interceptor.NewClient(h.api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			h.request(obj, key.Namespace, "get")
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			h.request(list, listNamespace(opts), "list")
			return c.List(ctx, list, opts...)
		},
	})
	opts := DefaultOptions()
	opts.RunnerImage = "ghcr.io/nodeupgrade/nodeupgrade:v0.1.0"
	opts.AllowedImageRepositories = []string{"docker.io/kubeedge/installation-package"}
	opts.StatusWriteInterval = 0
	if adjust != nil {
		adjust(&opts)
	}
	r, err := NewReconciler(Deps{Client: cached, APIReader: direct, Recorder: h.events, Clock: h.clock, Metrics: NewMetrics()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	return h
}

// intercept logs a write, lets refuse turn it down, and otherwise makes it.
func (h *harness) intercept(obj client.Object, verb string, do func() error) error {
	w := write{Verb: verb}
	switch o := obj.(type) {
	case *corev1.Pod:
		w.Kind, w.Node = "Pod", o.Annotations[v1alpha1.AnnotationNode]
		w.Committed = h.storedState(w.Node)
		if ref := metav1.GetControllerOf(o); ref != nil {
			w.Own = ref.UID == h.jobUID
		}
	case *v1alpha1.NodeUpgradeJob:
		w.Kind = "NodeUpgradeJob"
	case *corev1.ConfigMap:
		w.Kind = "ConfigMap"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refuse != nil {
		if err := h.refuse(w); err != nil {
			w.Refused = true
			h.writes = append(h.writes, w)
			return err
		}
	}
	h.writes = append(h.writes, w)
	return do()
}

// reconcile runs one Reconcile of the job; writes then holds its writes.
func (h *harness) reconcile() (ctrl.Result, error) {
	h.writes = nil
	return h.r.Reconcile(h.ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: h.job}})
}

// mustReconcile runs one Reconcile that must not fail.
func (h *harness) mustReconcile() ctrl.Result {
	h.t.Helper()
	res, err := h.reconcile()
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	return res
}

// stored is the job as the API holds it now.
func (h *harness) stored() *v1alpha1.NodeUpgradeJob {
	h.t.Helper()
	job := &v1alpha1.NodeUpgradeJob{}
	if err := h.api.Get(h.ctx, client.ObjectKey{Name: h.job}, job); err != nil {
		h.t.Fatalf("get job: %v", err)
	}
	return job
}

// storedState is node's state in the stored job's status, "" when it has
// no entry (or the job is gone).
func (h *harness) storedState(node string) string {
	job := &v1alpha1.NodeUpgradeJob{}
	if err := h.api.Get(h.ctx, client.ObjectKey{Name: h.job}, job); err != nil {
		return ""
	}
	// A sharded job's entries are in its shards, as far as they are written.
	entries, err := statusshard.Read(h.ctx, h.api, job)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	for _, e := range entries {
		if e.NodeName == node {
			return e.State
		}
	}
	return ""
}

// entry is node's entry in the stored status.
func (h *harness) entry(node string) v1alpha1.TaskStatus {
	h.t.Helper()
	for _, e := range h.stored().Status.NodeStatus {
		if e.NodeName == node {
			return e
		}
	}
	h.t.Fatalf("no status entry for node %s", node)
	return v1alpha1.TaskStatus{}
}

// pods are the stored upgrade pods, keyed by node (found by the node
// annotation, not by name: how pods are named is the pod builder's).
func (h *harness) pods() map[string]*corev1.Pod {
	h.t.Helper()
	list := &corev1.PodList{}
	if err := h.api.List(h.ctx, list, client.HasLabels{v1alpha1.LabelJob}); err != nil {
		h.t.Fatalf("list pods: %v", err)
	}
	out := map[string]*corev1.Pod{}
	for i := range list.Items {
		out[list.Items[i].Annotations[v1alpha1.AnnotationNode]] = &list.Items[i]
	}
	return out
}

// finish plays the node's runner and kubelet: its pod ends, and when it
// succeeded the node reports the target version.
func (h *harness) finish(node string, succeeded bool) {
	h.t.Helper()
	pod, ok := h.pods()[node]
	if !ok {
		h.t.Fatalf("node %s has no pod to finish", node)
	}
	pod.Status.Phase = corev1.PodFailed
	pod.Status.Reason, pod.Status.Message = "Error", "keadm upgrade failed"
	if succeeded {
		pod.Status.Phase, pod.Status.Reason, pod.Status.Message = corev1.PodSucceeded, "", ""
		n := &corev1.Node{}
		if err := h.api.Get(h.ctx, client.ObjectKey{Name: node}, n); err != nil {
			h.t.Fatal(err)
		}
		n.Status.NodeInfo.KubeletVersion = kubeletVersion(toVersion)
		if err := h.api.Status().Update(h.ctx, n); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.api.Status().Update(h.ctx, pod); err != nil {
		h.t.Fatalf("finish pod of %s: %v", node, err)
	}
}

// did lists the last reconcile's writes as "verb kind node" lines, the
// refused ones marked.
func (h *harness) did() []string {
	var out []string
	for _, w := range h.writes {
		s := w.Verb + " " + w.Kind
		if w.Node != "" {
			s += " " + w.Node
		}
		if w.Refused {
			s += " (refused)"
		}
		out = append(out, s)
	}
	return out
}

func kubeletVersion(edgecore string) string { return "v1.30.7-kubeedge-" + edgecore }

// edgeNodes are Ready edge nodes at fromVersion.
func edgeNodes(names ...string) []*corev1.Node {
	var out []*corev1.Node
	for _, name := range names {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{DefaultEdgeNodeLabel: ""}}}
		n.Status.NodeInfo.KubeletVersion = kubeletVersion(fromVersion)
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		out = append(out, n)
	}
	return out
}

// testJob upgrades the named nodes to toVersion, concurrency at a time.
func testJob(name string, concurrency int32, nodes ...string) *v1alpha1.NodeUpgradeJob {
	return &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec:       v1alpha1.NodeUpgradeJobSpec{NodeNames: nodes, Version: toVersion, Concurrency: concurrency, FailureTolerate: "1"},
	}
}
