package monitoring

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	dir, err := testenv.Prometheus()
	if err != nil {
		t.Fatalf("the rule tests need Debian's promtool: %v", err)
	}
	out, err := exec.Command(filepath.Join(dir, "promtool"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRules: the alert rules load in a real Prometheus's rule checker, and
// their unit tests (series in, alerts out) pass.
func TestRules(t *testing.T) {
	t.Log(promtool(t, "check", "rules", AlertsFile))
	t.Log(promtool(t, "test", "rules", AlertTestsFile))
}

// metricName matches the project's and controller-runtime's metric names in
// a query.
var metricName = regexp.MustCompile(`\b(nodeupgrade_[a-z_]+|leader_election_[a-z_]+)\b`)

// TestDashboardShape: every panel queries the dashboard's Prometheus data
// source, and only metrics docs/metrics.md documents.
func TestDashboardShape(t *testing.T) {
	g := NewWithT(t)
	d, err := ReadDashboard()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.UID).NotTo(BeEmpty())
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Type+":"+v.Name)
	}
	g.Expect(vars).To(ContainElements("datasource:datasource", "query:job"))
	docs, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "metrics.md"))
	g.Expect(err).NotTo(HaveOccurred())
	ids := map[int]bool{}
	for _, p := range d.Panels {
		g.Expect(ids).NotTo(HaveKey(p.ID), "panel id %d twice", p.ID)
		ids[p.ID] = true
		g.Expect(p.Datasource.UID).To(Equal("${datasource}"), p.Title)
		g.Expect(p.Targets).NotTo(BeEmpty(), p.Title)
		g.Expect(p.GridPos.W*p.GridPos.H).To(BeNumerically(">", 0), p.Title)
		for _, tg := range p.Targets {
			names := metricName.FindAllString(tg.Expr, -1)
			g.Expect(names).NotTo(BeEmpty(), "%s %s: %s", p.Title, tg.RefID, tg.Expr)
			for _, n := range names {
				if strings.HasPrefix(n, "leader_election_") {
					continue // controller-runtime's
				}
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
				g.Expect(string(docs)).To(ContainSubstring("`"+base+"`"), "%s uses %s, which docs/metrics.md does not list", p.Title, n)
			}
		}
	}
}

// TestDashboardAndAlertsOnTheRealController: a real Prometheus scrapes two
// real controller replicas (leader election on) while they roll out jobs
// on the local world's simulated fleet: one with a failed node, one that
// fails on its tolerance, and one whose status writes the API server
// refuses. Every dashboard query must answer with data over the rollout,
// and the alerts must fire, and stay quiet, as the rollout deserves.
func TestDashboardAndAlertsOnTheRealController(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, two controllers and Prometheus")
	}
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()

	fleet := framework.Fleet("fleet", 6)
	fleet[5].Behavior = fleetsim.BehaviorFailRollback
	failing := framework.Fleet("failing", 2)
	for i := range failing {
		failing[i].Behavior = fleetsim.BehaviorFail
	}
	refused := framework.Fleet("refused", 1)
	cluster, err := localcluster.Start(ctx, localcluster.Options{
		Dir:             filepath.Join(dir, "world"),
		UpgradeDuration: 3 * time.Second,
		Nodes:           append(append(fleet, failing...), refused...),
	})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Errorf("stopping the world: %v", err)
		}
	})
	if res := cluster.KubectlWithInput(ctx, []byte(RefuseStatusWrites("refused")), "apply", "-f", "-"); res.Err != nil {
		t.Fatalf("admission policy: %v", res)
	}
	var targets []string
	for _, name := range []string{"replica-1", "replica-2"} {
		ctl, err := cluster.StartController(ctx, localcluster.ControllerOptions{Name: name, LeaderElect: true})
		g.Expect(err).NotTo(HaveOccurred())
		targets = append(targets, strings.TrimSuffix(strings.TrimPrefix(ctl.MetricsURL(), "http://"), "/metrics"))
	}
	prom, err := Start(ctx, dir, "- job_name: nodeupgrade\n  static_configs:\n  - targets: ['"+strings.Join(targets, "', '")+"']\n")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(prom.Stop)
	defer func() {
		if t.Failed() {
			t.Logf("prometheus log:\n%s", prom.Log())
		}
	}()
	start := time.Now()

	k8s := cluster.Client
	for _, job := range []*v1alpha1.NodeUpgradeJob{
		framework.NewJob("fleet", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.Concurrency, s.FailureTolerate = framework.NodeNames(fleet), 2, "0.5"
		}),
		framework.NewJob("failing", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.Concurrency, s.FailureTolerate = framework.NodeNames(failing), 2, "0"
		}),
		framework.NewJob("refused", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(refused) }),
	} {
		g.Expect(k8s.Create(ctx, job)).To(Succeed())
	}
	for name, want := range map[string]string{"fleet": v1alpha1.StateSuccessful, "failing": v1alpha1.StateFailed} {
		job, err := framework.WaitFinished(ctx, k8s, name, 2*time.Minute)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(job.Status.State).To(Equal(want), "job %s: %s", name, job.Status.Reason)
	}
	// Prometheus has scraped the last changes when the refused writes show.
	g.Eventually(func() ([]Series, error) {
		return prom.Query(ctx, `nodeupgrade_status_write_failures_total{reason="Forbidden"}`)
	}).WithTimeout(time.Minute).ShouldNot(BeEmpty())
	time.Sleep(3 * time.Second) // a few more scrapes and rule evaluations

	up, all, err := prom.ActiveTargets(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(up).To(Equal(2), "targets up of %d", all)

	d, err := ReadDashboard()
	g.Expect(err).NotTo(HaveOccurred())
	queries := d.Queries(time.Since(start)+time.Minute, 20*time.Second)
	for _, e := range prom.CheckQueries(ctx, queries, start) {
		t.Error(e)
	}
	t.Logf("%d dashboard queries answered with data over the %s rollout", len(queries), time.Since(start).Round(time.Second))

	// The failed node is in the dashboard's failed-node table, under the
	// labels a scrape gives (the job's name as exported_job).
	failed, err := prom.Query(ctx, `max by (exported_job, node, result) (nodeupgrade_node_upgrade_seconds{result!="Success"})`)
	g.Expect(err).NotTo(HaveOccurred())
	var failedNodes []string
	for _, s := range failed {
		failedNodes = append(failedNodes, s.Labels["exported_job"]+"/"+s.Labels["node"]+"/"+s.Labels["result"])
	}
	g.Expect(failedNodes).To(ContainElements("fleet/"+fleet[5].Name+"/Failure", "failing/"+failing[0].Name+"/Failure"))

	rules, err := prom.Rules(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	state := map[string]string{}
	for _, r := range rules {
		g.Expect(r.Health).To(Equal("ok"), "rule %s: %s", r.Name, r.LastError)
		state[r.Name] = r.State
	}
	g.Expect(state).To(HaveKeyWithValue("NodeUpgradeStatusWritesFailing", "firing"))
	g.Expect(state).To(HaveKeyWithValue("NodeUpgradeJobFailed", "firing"))
	g.Expect(state).To(HaveKeyWithValue("NodeUpgradeControllerNoLeader", "inactive"))
	g.Expect(state).To(HaveKeyWithValue("NodeUpgradeJobStuck", "inactive"))
}
