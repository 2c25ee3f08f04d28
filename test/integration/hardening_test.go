package integration_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

// admissionPolicy installs a ValidatingAdmissionPolicy, named name, that
// refuses UPDATEs of resource (in group) on objects matching the CEL
// expression match unless allow holds, with message. probe is called until
// it returns an error holding message: the policy takes a moment to load.
// It returns a function that removes the policy.
func admissionPolicy(name, group, resource, match, allow, message string, probe func() error) func() {
	GinkgoHelper()
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{group}, APIVersions: []string{"*"}, Resources: []string{resource}},
				},
			}}},
			MatchConditions: []admissionv1.MatchCondition{{Name: "test-objects", Expression: match}},
			Validations:     []admissionv1.Validation{{Expression: allow, Message: message}},
		},
	}
	Expect(k8s.Create(suiteCtx, policy)).To(Succeed())
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}
	Expect(k8s.Create(suiteCtx, binding)).To(Succeed())
	Eventually(probe, 20*time.Second, 200*time.Millisecond).Should(MatchError(ContainSubstring(message)))
	return func() {
		Expect(k8s.Delete(suiteCtx, binding)).To(Succeed())
		Expect(k8s.Delete(suiteCtx, policy)).To(Succeed())
	}
}

// denyNodeStatus installs a ValidatingAdmissionPolicy that refuses any status
// write with node entries on jobs named deny-status-*: a stand-in, on the
// real API server, for every non-conflict refusal (too large, invalid,
// forbidden). It returns a function that removes the policy.
func denyNodeStatus() func() {
	GinkgoHelper()
	// A job of our own, to see when the policy is in force.
	probe := framework.NewJob("deny-status-probe", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = []string{"nowhere"} })
	Expect(k8s.Create(suiteCtx, probe)).To(Succeed())
	remove := admissionPolicy("deny-node-status", v1alpha1.GroupVersion.Group, "nodeupgradejobs/status",
		`object.metadata.name.startsWith("deny-status-")`,
		`!has(object.status) || !has(object.status.nodeStatus) || size(object.status.nodeStatus) == 0`,
		"test policy refuses node entries",
		func() error {
			p := probe.DeepCopy()
			p.Status.NodeStatus = []v1alpha1.TaskStatus{{NodeName: "nowhere"}}
			err := k8s.Status().Update(suiteCtx, p)
			if err == nil {
				p.Status.NodeStatus = nil
				Expect(k8s.Status().Update(suiteCtx, p)).To(Succeed())
				probe = p
			}
			return err
		})
	Expect(k8s.Delete(suiteCtx, probe)).To(Succeed())
	return remove
}

func statusWriteFailures() float64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() == "nodeupgrade_status_write_failures_total" {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

var _ = Describe("Hardening", func() {
	It("makes a refused status write visible and starts nothing until a write goes through", func() {
		specs := framework.Fleet("refused", 1)
		createFleet(specs)
		allow := denyNodeStatus()
		allowed := false
		defer func() {
			if !allowed {
				allow()
			}
		}()
		failuresBefore := statusWriteFailures()
		ctl := startController()
		defer stopController(ctl)
		Expect(k8s.Create(suiteCtx, framework.NewJob("deny-status-job", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) }))).To(Succeed())

		Eventually(func() *metav1.Condition {
			return apimeta.FindStatusCondition(getJob("deny-status-job").Status.Conditions, v1alpha1.ConditionStatusWriteFailed)
		}, 20*time.Second, 200*time.Millisecond).Should(And(
			Not(BeNil()),
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Message", ContainSubstring("test policy refuses node entries")),
		))
		Eventually(func() []string { return jobEvents(getJob("deny-status-job")) }, 10*time.Second).
			Should(ContainElement(v1alpha1.ConditionStatusWriteFailed))
		Expect(statusWriteFailures()).To(BeNumerically(">", failuresBefore))
		// Nothing was committed, so nothing was dispatched.
		Consistently(func() []corev1.Pod { return remainingPods("deny-status-job") }, 2*time.Second).Should(BeEmpty())

		allow()
		allowed = true
		job := waitFinished("deny-status-job", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful))
		Expect(apimeta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionStatusWriteFailed)).To(BeNil(), "the first write that goes through removes it")
	})

	// Issue 29 item 5: every status write refused, the condition's too,
	// with pods in flight. The pods whose outcome the stored status holds
	// are still released and deleted (the cleanup path of a refused
	// write), nothing new starts, and the outcomes not written wait in
	// their pods until a write goes through.
	It("keeps cleaning up while every status write is refused, with pods in flight", func() {
		specs := framework.Fleet("deny-all", 4)
		a, b, c, d := specs[0].Name, specs[1].Name, specs[2].Name, specs[3].Name
		specs[0].Duration, specs[1].Duration, specs[2].Duration = time.Second, 4*time.Second, 15*time.Second
		createFleet(specs)

		// a's pod cannot be released at first, so it outlives its recorded outcome.
		const tracking = v1alpha1.FinalizerPodTracking
		holdProbe := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "hold-release-probe", Namespace: podNamespace,
				Annotations: map[string]string{v1alpha1.AnnotationNode: "hold-release-probe"}, Finalizers: []string{tracking}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "probe"}}},
		}
		Expect(k8s.Create(suiteCtx, holdProbe)).To(Succeed())
		node := `object.metadata.?annotations[?"` + v1alpha1.AnnotationNode + `"].orValue("")`
		allowRelease := admissionPolicy("hold-release", "", "pods",
			node+` == "`+a+`" || `+node+` == "hold-release-probe"`,
			`!("`+tracking+`" in oldObject.metadata.?finalizers.orValue([])) || "`+tracking+`" in object.metadata.?finalizers.orValue([])`,
			"test policy holds the pod's tracking finalizer",
			func() error {
				// Until the policy is in force the finalizer comes off: put it back.
				finalizers := func(f string) client.Patch {
					return client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":`+f+`}}`))
				}
				if err := k8s.Patch(suiteCtx, holdProbe.DeepCopy(), finalizers(`null`)); err != nil {
					return err
				}
				Expect(k8s.Patch(suiteCtx, holdProbe.DeepCopy(), finalizers(`["`+tracking+`"]`))).To(Succeed())
				return nil
			})
		released := false
		defer func() {
			if !released {
				allowRelease()
			}
			Expect(k8s.Patch(suiteCtx, holdProbe, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
			Expect(client.IgnoreNotFound(k8s.Delete(suiteCtx, holdProbe))).To(Succeed())
		}()

		// Every status write of a deny-all-* job is refused once its stored
		// status records a success: the write that records a's goes through.
		probe := framework.NewJob("deny-all-probe", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = []string{"nowhere"} })
		Expect(k8s.Create(suiteCtx, probe)).To(Succeed())
		probe.Status.Counts.Succeeded = 1
		Expect(k8s.Status().Update(suiteCtx, probe)).To(Succeed())
		allowStatus := admissionPolicy("deny-all-status", v1alpha1.GroupVersion.Group, "nodeupgradejobs/status",
			`object.metadata.name.startsWith("deny-all-")`,
			`oldObject.?status.?counts.?succeeded.orValue(0) == 0`,
			"test policy refuses every status write",
			func() error { return k8s.Status().Update(suiteCtx, probe) })
		statusAllowed := false
		defer func() {
			if !statusAllowed {
				allowStatus()
			}
		}()
		Expect(k8s.Delete(suiteCtx, probe)).To(Succeed())

		failuresBefore := statusWriteFailures()
		ctl := startController()
		defer stopController(ctl)
		Expect(k8s.Create(suiteCtx, framework.NewJob("deny-all-job", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.Concurrency = framework.NodeNames(specs), 2
		}))).To(Succeed())
		podsByNode := func() map[string]corev1.Pod {
			out := map[string]corev1.Pod{}
			for _, p := range remainingPods("deny-all-job") {
				out[p.Annotations[v1alpha1.AnnotationNode]] = p
			}
			return out
		}

		// a's outcome is committed (c dispatched in the same write); its
		// pod stays, held; then the next changes (c's and b's progress, b's
		// end) are refused.
		Eventually(func() string { return nodeState(getJob("deny-all-job"), a) }, 20*time.Second, 100*time.Millisecond).
			Should(Equal(v1alpha1.StateSuccessful))
		stored := getJob("deny-all-job").Status
		Expect(podsByNode()).To(HaveKey(a))
		Eventually(func() corev1.PodPhase { return podsByNode()[b].Status.Phase }, 20*time.Second, 100*time.Millisecond).
			Should(Equal(corev1.PodSucceeded))
		// From the first refused write on, the controller holds changes
		// the API does not: every reconcile takes the refused path.
		Eventually(statusWriteFailures, 10*time.Second, 100*time.Millisecond).Should(BeNumerically(">", failuresBefore))

		allowRelease()
		released = true
		// The policy's removal is no event for the controller: a touch of
		// the job's annotations brings the next reconcile forward.
		touch := 0
		Eventually(func() map[string]corev1.Pod {
			touch++
			Expect(k8s.Patch(suiteCtx, getJob("deny-all-job"), client.RawPatch(types.MergePatchType,
				[]byte(fmt.Sprintf(`{"metadata":{"annotations":{"test.nodeupgrade.io/touch":"%d"}}}`, touch))))).To(Succeed())
			return podsByNode()
		}, 20*time.Second, 500*time.Millisecond).ShouldNot(HaveKey(a), "a's outcome is recorded: its pod is released and deleted while writes fail")

		job := getJob("deny-all-job")
		Expect(job.Status.NodeStatus).To(Equal(stored.NodeStatus), "no status write went through")
		Expect(apimeta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionStatusWriteFailed)).To(BeNil(), "the condition's write is refused too")
		Expect(jobEvents(job)).To(ContainElement(v1alpha1.ConditionStatusWriteFailed), "the Warning event shows the refusal")
		pods := podsByNode()
		Expect(pods).To(HaveKey(b))
		Expect(pods[b].Finalizers).To(ContainElement(tracking), "b's outcome is not recorded: its pod stays tracked")
		Expect(nodeState(job, b)).NotTo(Equal(v1alpha1.StateSuccessful))
		Expect(pods).To(HaveKey(c), "c in flight")
		Expect(pods).NotTo(HaveKey(d), "b's slot is not given to d: nothing was committed")
		Consistently(func() map[string]corev1.Pod { return podsByNode() }, 2*time.Second, 200*time.Millisecond).ShouldNot(HaveKey(d))

		allowStatus()
		statusAllowed = true
		job = waitFinished("deny-all-job", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		Expect(nodeEntry(job, b).Action).To(Equal(v1alpha1.ActionSuccess), "b's outcome, kept by its pod, is recorded once a write goes through")
	})

	It("normalises the image allow-list at startup and refuses an entry that does not parse", func() {
		_, err := cluster.NewInProcessManager("--allowed-image-repositories=docker.io/kubeedge/installation-package:v1.21.0")
		Expect(err).To(MatchError(ContainSubstring("--allowed-image-repositories")))

		// Written the way users write it: before normalisation this entry
		// matched nothing and refused every job.
		ctl := startController("--allowed-image-repositories=Docker.io/kubeedge/")
		defer stopController(ctl)
		oneNodeJob("allow", "kubeedge/installation-package")
		job := waitFinished("allow", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
	})

	It("releases a tracked pod the cache has not seen when its job is deleted", func() {
		// A job and its pod created in the same instant as the job's
		// deletion: the reconciler's cache (here one that has seen no pod
		// at all) does not know the pod yet.
		job := framework.NewJob("orphan", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = []string{"orphan-node"} })
		controllerutil.AddFinalizer(job, v1alpha1.FinalizerJobCleanup)
		Expect(k8s.Create(suiteCtx, job)).To(Succeed())
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: upgradepod.PodName("orphan-node"), Namespace: podNamespace,
				Labels:          map[string]string{v1alpha1.LabelJob: upgradepod.JobLabelValue(job.Name), v1alpha1.LabelNode: "orphan-node"},
				Annotations:     map[string]string{v1alpha1.AnnotationNode: "orphan-node"},
				Finalizers:      []string{v1alpha1.FinalizerPodTracking},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, v1alpha1.GroupVersion.WithKind("NodeUpgradeJob"))},
			},
			// Unbound, so that with no kubelet its deletion is immediate.
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: runner.ContainerUpgrade, Image: "runner"}}},
		}
		Expect(k8s.Create(suiteCtx, pod)).To(Succeed())
		Expect(k8s.Delete(suiteCtx, job)).To(Succeed())

		opts := controller.DefaultOptions()
		opts.Namespace, opts.RunnerImage, opts.AllowAnyImageRepository = podNamespace, localcluster.DefaultRunnerImage, true
		r, err := controller.NewReconciler(controller.Deps{Client: podlessCache{k8s}, APIReader: k8s}, opts)
		Expect(err).NotTo(HaveOccurred())
		_, err = r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: job.Name}})
		Expect(err).NotTo(HaveOccurred())

		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(suiteCtx, client.ObjectKeyFromObject(job), &v1alpha1.NodeUpgradeJob{}))
		}, 10*time.Second).Should(BeTrue(), "the job goes")
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(suiteCtx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
		}, 10*time.Second).Should(BeTrue(), "its pod is released and deleted, not left with its tracking finalizer")
	})
})

var _ = Describe("One upgrade per node across jobs", func() {
	It("starts a re-created job's pod on a node only once the deleted job's pod is gone", func() {
		specs := framework.Fleet("recreate", 1)
		specs[0].Duration = 20 * time.Second
		createFleet(specs)
		node := specs[0].Name
		ctl := startController()
		defer stopController(ctl)

		// Every pod event on the node, in order, from a watch of our own.
		type podEvent struct {
			typ       watch.EventType
			uid       types.UID
			terminate bool
		}
		var mu sync.Mutex
		var events []podEvent
		w, err := clientset.CoreV1().Pods(podNamespace).Watch(suiteCtx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		defer w.Stop()
		go func() {
			for ev := range w.ResultChan() {
				if pod, ok := ev.Object.(*corev1.Pod); ok && pod.Annotations[v1alpha1.AnnotationNode] == node {
					mu.Lock()
					events = append(events, podEvent{ev.Type, pod.UID, pod.DeletionTimestamp != nil})
					mu.Unlock()
				}
			}
		}()

		first := framework.NewJob("recreate", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) })
		Expect(k8s.Create(suiteCtx, first)).To(Succeed())
		Eventually(func() []corev1.Pod { return remainingPods("recreate") }, 10*time.Second).Should(HaveLen(1))
		old := remainingPods("recreate")[0]
		oldPod := old.UID
		// The old pod outlives its job's deletion, as a real one does while
		// its runner rolls back within the grace period: a finalizer of the
		// test's own holds it.
		const hold = "test.nodeupgrade.io/hold"
		Expect(k8s.Patch(suiteCtx, &old, client.RawPatch(types.MergePatchType,
			[]byte(`{"metadata":{"finalizers":["`+v1alpha1.FinalizerPodTracking+`","`+hold+`"]}}`)))).To(Succeed())
		Expect(k8s.Delete(suiteCtx, first)).To(Succeed())
		// The same name again, at once: a job of another UID, whose pod on
		// the node would have the old pod's name (the node's).
		Eventually(func() error {
			return k8s.Create(suiteCtx, framework.NewJob("recreate", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) }))
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
		Eventually(func() []v1alpha1.TaskStatus { return getJob("recreate").Status.NodeStatus }, 10*time.Second).
			Should(ContainElement(HaveField("Reason", "waiting: another upgrade is running on this node (job recreate)")))
		Consistently(func() int { return len(remainingPods("recreate")) }, 3*time.Second).Should(Equal(1), "only the old, terminating pod")
		Expect(k8s.Get(suiteCtx, client.ObjectKeyFromObject(&old), &old)).To(Succeed())
		Expect(old.DeletionTimestamp).NotTo(BeNil())
		// The old pod is terminating: the 20s only had to outlast it. The
		// new job's pod need not take as long.
		Expect(fleetsim.SetDuration(suiteCtx, k8s, node, 2*time.Second)).To(Succeed())
		Expect(k8s.Patch(suiteCtx, &old, client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/metadata/finalizers","value":[]}]`)))).To(Succeed())
		job := waitFinished("recreate", 90*time.Second)
		Expect(job.UID).NotTo(Equal(first.UID))
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)

		mu.Lock()
		defer mu.Unlock()
		oldGone, newAdded := -1, -1
		for i, ev := range events {
			switch {
			case ev.uid == oldPod && ev.typ == watch.Deleted && oldGone < 0:
				oldGone = i
			case ev.uid != oldPod && ev.typ == watch.Added && newAdded < 0:
				newAdded = i
			}
		}
		Expect(oldGone).To(BeNumerically(">=", 0), "the deleted job's pod went: %v", events)
		Expect(newAdded).To(BeNumerically(">", oldGone), "the new job's pod came after the old one was gone: %v", events)
	})

	// On real KubeEdge a deleted pod leaves the API at once while its runner
	// still rolls the node back; the next job's steps wait for the node lock
	// (pkg/runner). fleetsim plays that runner: the new pod starts, and its
	// first step holds until the old runner has left the node.
	It("waits in its first step while a deleted job's runner still rolls back on the node", func() {
		specs := framework.Fleet("linger", 1)
		specs[0].Duration = 8 * time.Second // so the old runner rolls back for 8s
		createFleet(specs)
		node := specs[0].Name
		ctl := startController()
		defer stopController(ctl)

		first := framework.NewJob("linger-a", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) })
		Expect(k8s.Create(suiteCtx, first)).To(Succeed())
		Eventually(func() string { return nodeState(getJob("linger-a"), node) }, 15*time.Second, 50*time.Millisecond).
			Should(Equal(v1alpha1.StateUpgrading))
		Expect(k8s.Delete(suiteCtx, first)).To(Succeed())
		var busyUntil time.Time
		Eventually(func(g Gomega) {
			n, err := clientset.CoreV1().Nodes().Get(suiteCtx, node, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			busyUntil, err = time.Parse(time.RFC3339Nano, n.Annotations[fleetsim.AnnotationRunnerBusyUntil])
			g.Expect(err).NotTo(HaveOccurred())
		}, 10*time.Second).Should(Succeed())
		Eventually(func() []corev1.Pod { return remainingPods("linger-a") }, 10*time.Second).Should(BeEmpty())
		// The old runner's time on the node is fixed now; the new job's
		// upgrade, once it may start, need not take 8s too.
		Expect(fleetsim.SetDuration(suiteCtx, k8s, node, 2*time.Second)).To(Succeed())

		Expect(k8s.Create(suiteCtx, framework.NewJob("linger-b", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) }))).To(Succeed())
		// Its pod runs at once, and shows its first step until the old
		// runner is gone.
		Eventually(func() string { return nodeState(getJob("linger-b"), node) }, 10*time.Second, 50*time.Millisecond).
			Should(Equal(v1alpha1.StateBackingUp))
		Expect(time.Now()).To(BeTemporally("<", busyUntil), "the test must see the new pod while the old runner is still there")
		Consistently(func() string { return nodeState(getJob("linger-b"), node) }, time.Until(busyUntil)-500*time.Millisecond, 100*time.Millisecond).
			Should(Equal(v1alpha1.StateBackingUp), "no step past the first while the old runner holds the node")
		job := waitFinished("linger-b", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		finished, err := time.Parse(time.RFC3339, nodeEntry(job, node).Time)
		Expect(err).NotTo(HaveOccurred())
		Expect(finished).To(BeTemporally(">=", busyUntil.Truncate(time.Second)))
	})
})

var _ = Describe("Orphan sweep", func() {
	It("releases and deletes, at start, a tracked pod whose job no longer exists", func() {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: upgradepod.PodName("gone-node"), Namespace: podNamespace,
				Labels:      map[string]string{v1alpha1.LabelJob: upgradepod.JobLabelValue("gone"), v1alpha1.LabelNode: "gone-node"},
				Annotations: map[string]string{v1alpha1.AnnotationNode: "gone-node"},
				Finalizers:  []string{v1alpha1.FinalizerPodTracking},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeUpgradeJob",
					Name: "gone", UID: "0b1e7a7e-0000-4000-8000-000000000001"}},
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: runner.ContainerUpgrade, Image: "runner"}}},
		}
		Expect(k8s.Create(suiteCtx, pod)).To(Succeed())
		// A live job's tracked pod stays tracked. KubeEdge's controller
		// marked the job first, so no reconcile touches its pod either.
		live := framework.NewJob("live", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = []string{"live-node"}
		})
		live.Finalizers = []string{v1alpha1.FinalizerKubeEdgeController}
		Expect(k8s.Create(suiteCtx, live)).To(Succeed())
		kept := pod.DeepCopy()
		kept.ResourceVersion, kept.UID = "", ""
		kept.Name, kept.Labels[v1alpha1.LabelJob] = upgradepod.PodName("live-node"), upgradepod.JobLabelValue("live")
		kept.Labels[v1alpha1.LabelNode], kept.Annotations[v1alpha1.AnnotationNode] = "live-node", "live-node"
		kept.OwnerReferences[0].Name, kept.OwnerReferences[0].UID = live.Name, live.UID
		Expect(k8s.Create(suiteCtx, kept)).To(Succeed())

		ctl := startController()
		defer stopController(ctl)
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(suiteCtx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
		}, 20*time.Second).Should(BeTrue(), "the orphan is released and deleted")
		got := &corev1.Pod{}
		Expect(k8s.Get(suiteCtx, client.ObjectKeyFromObject(kept), got)).To(Succeed())
		Expect(got.Finalizers).To(ContainElement(v1alpha1.FinalizerPodTracking), "the live job's pod is not the sweep's")
		Expect(k8s.Get(suiteCtx, client.ObjectKeyFromObject(live), live)).To(Succeed())
		live.Finalizers = nil
		Expect(k8s.Update(suiteCtx, live)).To(Succeed())
		Expect(k8s.Delete(suiteCtx, live)).To(Succeed())
		got.Finalizers = nil
		Expect(k8s.Update(suiteCtx, got)).To(Succeed())
		Expect(k8s.Delete(suiteCtx, got)).To(Succeed())
	})
})

// podlessCache is a client whose reads of pods find none, as a cache that
// has not yet seen a pod created an instant ago; everything else goes to
// the real API server.
type podlessCache struct{ client.Client }

func (c podlessCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*corev1.PodList); ok {
		return nil
	}
	return c.Client.List(ctx, list, opts...)
}
