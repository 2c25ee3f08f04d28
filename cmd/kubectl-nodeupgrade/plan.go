package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/jobinput"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// What the plan does with a node.
const (
	actionUpgrade = "upgrade"
	actionSkip    = "skip"
	actionDefer   = "defer"
	actionRefuse  = "refuse"
)

// PlanReport is what `plan` prints: the controller's first plan for the job,
// and the waves that follow from it.
type PlanReport struct {
	Job             string `json:"job"`
	TargetVersion   string `json:"targetVersion"`
	SelectedBy      string `json:"selectedBy"`
	Concurrency     int    `json:"concurrency"`
	Timeout         string `json:"timeout"`
	FailureTolerate string `json:"failureTolerate"`
	// Refusal is why the controller would fail the job before touching a node.
	Refusal string `json:"refusal,omitempty"`
	// Suspended is spec.suspend: the job would start paused, and the waves
	// begin when it is resumed.
	Suspended bool `json:"suspended,omitempty"`
	// Nodes are every selected node, in dispatch order.
	Nodes []PlanNode `json:"nodes"`
	// Waves are the nodes dispatched together when every node takes as long.
	Waves    [][]string `json:"waves"`
	Estimate Estimate   `json:"estimate"`
	// Warnings say what the plan could not check.
	Warnings []string `json:"warnings,omitempty"`
	// Windows describe spec.maintenanceWindows; WaveStarts (set with
	// windows or a canary) say when each wave starts, waiting for windows
	// and the canary's pause included; Pauses say where the job suspends
	// itself.
	Windows    []string `json:"windows,omitempty"`
	WaveStarts []string `json:"waveStarts,omitempty"`
	Pauses     []string `json:"pauses,omitempty"`
}

// PlanNode is one selected node in the plan.
type PlanNode struct {
	Name string `json:"name"`
	// Version is the edgecore version the node reports now.
	Version string `json:"version,omitempty"`
	Action  string `json:"action"`
	Wave    int    `json:"wave,omitempty"`
	// Reason is the controller's own reason for a skipped or deferred node.
	Reason string `json:"reason,omitempty"`
}

// Estimate is how long the upgrade should take.
type Estimate struct {
	PerNode string `json:"perNode"`
	// Source says where PerNode comes from.
	Source string `json:"source"`
	Total  string `json:"total"`
	// Finish is when the last wave ends (RFC 3339), with windows or a canary.
	Finish string `json:"finish,omitempty"`
}

// perNode is a per-node upgrade time and where it comes from.
type perNode struct {
	d      time.Duration
	source string
}

// planJob runs the controller's planner on job as the controller would see
// it on its first reconcile, against the given nodes and upgrade pods. Nodes
// dispatched are then taken as upgraded and the planner asked again, until
// it dispatches nothing more (waveRun): the waves come from the planner
// itself, so the plan cannot disagree with the controller on the order, the
// concurrency, the windows or the canary. The clock moves only by waves and
// to window openings, and a deferred (NotReady or busy) node's wait starts
// again at each step, so it stays deferred rather than failing.
func planJob(job *v1alpha1.NodeUpgradeJob, nodes []corev1.Node, pods []corev1.Pod, policy jobinput.Policy, now time.Time, per perNode) *PlanReport {
	fresh := job.DeepCopy()
	fresh.Status = v1alpha1.NodeUpgradeJobStatus{}
	// The controller's own input builder, refusals and all.
	in, _ := jobinput.Build(fresh, nodes, policy, now)
	in.Pods = map[string]rollout.PodView{}
	cfg := in.Config
	// A job created paused dispatches nothing until it is resumed; the
	// waves shown are those that follow the resume.
	suspended := cfg.Suspended
	in.Config.Suspended = false
	// The controller keeps a job too large for its own status in shards:
	// no job is refused for its size.
	in.Sharded = true
	upgradepod.MarkBusy(pods, "", in.Nodes)
	before := make(map[string]rollout.NodeView, len(in.Nodes))
	for name, view := range in.Nodes {
		before[name] = view
	}

	report := &PlanReport{
		Job: job.Name, TargetVersion: cfg.TargetVersion, SelectedBy: in.SelectionSource,
		Concurrency: cfg.Concurrency, Timeout: cfg.Timeout.String(), FailureTolerate: v1alpha1.DefaultFailureTolerate,
		Refusal: in.Config.Refusal, Suspended: suspended, Waves: [][]string{},
	}
	if job.Spec.FailureTolerate != "" {
		report.FailureTolerate = job.Spec.FailureTolerate
	}
	report.Windows = describeWindows(job.Spec.MaintenanceWindows, nodes)
	run := &waveRun{in: in, cfg: cfg, per: per.d, timed: len(cfg.Windows) > 0 || cfg.Canary != nil,
		report: report, wave: map[string]int{}, at: now, end: now}
	plan := run.run(job.Name)
	wave := run.wave
	for _, e := range plan.Status.NodeStatus {
		n := PlanNode{Name: e.NodeName, Version: before[e.NodeName].Version, Reason: e.Reason}
		switch {
		case wave[e.NodeName] > 0:
			n.Action, n.Wave, n.Reason = actionUpgrade, wave[e.NodeName], ""
		case e.State == v1alpha1.StateNotAttempted:
			n.Action = actionRefuse
		case e.State == v1alpha1.StateNone:
			n.Action = actionDefer
		default:
			n.Action = actionSkip
		}
		report.Nodes = append(report.Nodes, n)
	}
	if plan.Status.State == v1alpha1.StateFailed && report.Refusal == "" && len(report.Waves) == 0 {
		// Every node skipped: the controller fails the job with this reason.
		report.Refusal = plan.Status.Reason
	}
	report.Estimate = Estimate{PerNode: per.d.String(), Source: per.source, Total: run.end.Sub(now).String()}
	if run.timed {
		report.Estimate.Finish = run.end.UTC().Format(time.RFC3339)
	}
	return report
}

// waveRun plays a job's plans wave by wave, for planJob. Its clock, at,
// moves by the per-node time after each wave and to the next window when
// nothing can start before it; end is when the last wave ends (a node that
// never starts, a deferred one, may make the clock wait past it).
type waveRun struct {
	in      rollout.Input
	cfg     rollout.Config
	per     time.Duration
	timed   bool // windows or a canary: wave starts are shown
	report  *PlanReport
	wave    map[string]int
	at, end time.Time
}

// run plans until nothing more starts, and returns the last plan.
func (w *waveRun) run(jobName string) rollout.Plan {
	plan := rollout.Decide(w.in)
	for steps := 0; steps <= 4*len(plan.Status.NodeStatus)+4; steps++ {
		switch {
		case plan.SetSuspend != nil && *plan.SetSuspend:
			w.in.Status = plan.Status
			w.pause(jobName)
		case len(plan.Dispatch) > 0:
			w.dispatch(plan)
		case plan.Status.NextWindow != "":
			// Nothing starts before the next window: wait for it.
			next, err := time.Parse(time.RFC3339, plan.Status.NextWindow)
			if err != nil || !next.After(w.at) {
				return plan
			}
			w.in.Status, w.at = plan.Status, next
		default:
			return plan
		}
		// A deferred (NotReady or busy) node stays deferred rather than
		// failing as the clock moves: its wait starts again at each step.
		for i := range w.in.Status.NodeStatus {
			if e := &w.in.Status.NodeStatus[i]; e.State == v1alpha1.StateNone {
				e.Time = ""
			}
		}
		w.in.Now = w.at
		plan = rollout.Decide(w.in)
	}
	return plan
}

// dispatch takes a plan's dispatched nodes as one wave, upgraded when the
// per-node time has passed.
func (w *waveRun) dispatch(plan rollout.Plan) {
	var names []string
	for _, d := range plan.Dispatch {
		names = append(names, d.Node)
		w.wave[d.Node] = len(w.report.Waves) + 1
		w.in.Pods[d.Node] = rollout.PodView{Phase: rollout.PodSucceeded}
		view := w.in.Nodes[d.Node]
		view.Version, view.Ready = w.cfg.TargetVersion, true
		w.in.Nodes[d.Node] = view
	}
	w.report.Waves = append(w.report.Waves, names)
	if w.timed {
		w.report.WaveStarts = append(w.report.WaveStarts, w.at.UTC().Format(time.RFC3339))
	}
	w.in.Status = plan.Status
	w.at = w.at.Add(w.per)
	w.end = w.at
}

// pause: the canary wave is done and the job suspends itself. The plan
// goes on as if it were resumed, after the soak if it has one.
func (w *waveRun) pause(jobName string) {
	w.in.Config.Suspended = true
	w.in.Status = rollout.Decide(w.in).Status
	w.in.Config.Suspended = false
	pause := fmt.Sprintf("after wave %d (the canary) the job suspends itself until resumed (kubectl nodeupgrade resume %s); the waves after it follow the resume",
		len(w.report.Waves), jobName)
	if w.cfg.Canary.Soak > 0 {
		pause = fmt.Sprintf("after wave %d (the canary) the job suspends itself and resumes by itself %s later if every canary node passed",
			len(w.report.Waves), w.cfg.Canary.Soak)
		w.at = w.at.Add(w.cfg.Canary.Soak)
	}
	w.report.Pauses = append(w.report.Pauses, pause)
}

// readJob reads a NodeUpgradeJob manifest from a file, "-" for stdin.
func readJob(path string, stdin io.Reader) (*v1alpha1.NodeUpgradeJob, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the job: %w", err)
	}
	job := &v1alpha1.NodeUpgradeJob{}
	// Not strict: a manifest may carry fields newer than this plugin
	// (spec.suspend, say), which the plan does not need.
	if err := yaml.Unmarshal(data, job); err != nil {
		return nil, fmt.Errorf("%s: not a NodeUpgradeJob manifest: %w", path, err)
	}
	if job.Kind != "NodeUpgradeJob" || job.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, fmt.Errorf("%s: want kind NodeUpgradeJob, apiVersion %s; got kind %q, apiVersion %q",
			path, v1alpha1.GroupVersion, job.Kind, job.APIVersion)
	}
	if job.Name == "" {
		return nil, fmt.Errorf("%s: the job has no metadata.name", path)
	}
	return job, nil
}

func (a *app) planCommand() *cobra.Command {
	var file, output string
	var per time.Duration
	cmd := &cobra.Command{
		Use:   "plan -f JOB.yaml",
		Short: "Show what the controller would do with a job: selection, skips, deferrals, waves and duration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("plan needs -f JOB.yaml (or -f - for stdin)")
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			job, err := readJob(file, a.in)
			if err != nil {
				return err
			}
			ctx, cancel := commandContext(cmd)
			defer cancel()
			report, err := a.plan(ctx, job, per)
			if err != nil {
				return err
			}
			return writePlan(a.out, report, output)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "The NodeUpgradeJob manifest to plan (- for stdin)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: table (default), json or yaml")
	cmd.Flags().DurationVar(&per, "per-node", 0, "Time one node takes; default: measured from finished jobs, else the job's timeout")
	return cmd
}

// plan reads the live nodes and pods and plans job against them.
func (a *app) plan(ctx context.Context, job *v1alpha1.NodeUpgradeJob, perNodeFlag time.Duration) (*PlanReport, error) {
	nodes := &corev1.NodeList{}
	if err := a.client.List(ctx, nodes); err != nil {
		return nil, apiError(err, "list", "nodes")
	}
	var warnings []string
	pods := &corev1.PodList{}
	if err := a.client.List(ctx, pods, client.InNamespace(a.namespace), client.HasLabels{v1alpha1.LabelNode}); err != nil {
		// The plan is still right for every node no other job is upgrading.
		warnings = append(warnings, "nodes busy with another job's upgrade are not shown: "+apiError(err, "list", "pods in "+a.namespace).Error())
	}
	existing := &v1alpha1.NodeUpgradeJob{}
	if err := a.client.Get(ctx, client.ObjectKey{Name: job.Name}, existing); err == nil {
		// The plan is for a new job; applying the manifest would not start
		// the existing one again.
		warnings = append(warnings, fmt.Sprintf("%s exists already (%s): this plan is for a new job of that spec, which kubectl apply would not start", jobRef(job.Name), orDash(existing.Status.State)))
	}
	cfg, err := rollout.ConfigFromSpec(&job.Spec)
	if err != nil {
		return nil, err
	}
	per, warning := a.perNode(ctx, perNodeFlag, cfg.Timeout)
	if warning != "" {
		warnings = append(warnings, warning)
	}
	policy, warning := a.controllerPolicy(ctx)
	if warning != "" {
		warnings = append(warnings, warning)
	}
	report := planJob(job, nodes.Items, pods.Items, policy, a.clock.Now(), per)
	report.Warnings = warnings
	return report, nil
}

func checkOutput(output string) error {
	switch output {
	case "", "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q: want table, json or yaml", output)
}

// writeStructured prints v as JSON or YAML.
func writeStructured(w io.Writer, v any, output string) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if output == "yaml" {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
	} else {
		data = append(data, '\n')
	}
	_, err = w.Write(data)
	return err
}

func writePlan(w io.Writer, r *PlanReport, output string) error {
	if output == "json" || output == "yaml" {
		return writeStructured(w, r, output)
	}
	counts := map[string]int{}
	for _, n := range r.Nodes {
		counts[n.Action]++
	}
	fmt.Fprintf(w, "Plan for NodeUpgradeJob %s: upgrade to %s, %s selected by %s\n", r.Job, r.TargetVersion, plural(len(r.Nodes), "node"), r.SelectedBy)
	fmt.Fprintf(w, "concurrency %d, timeout %s per node, failureTolerate %s\n", r.Concurrency, r.Timeout, r.FailureTolerate)
	for _, window := range r.Windows {
		fmt.Fprintf(w, "maintenance window: %s\n", window)
	}
	if r.Refusal != "" {
		fmt.Fprintf(w, "\nThe controller would fail this job: %s\n", nodetext.Clean(r.Refusal))
	}
	if r.Suspended {
		fmt.Fprintf(w, "\nspec.suspend is true: nothing is dispatched until `kubectl nodeupgrade resume %s`; the waves below follow the resume\n", r.Job)
	}
	if len(r.Nodes) > 0 {
		rows := make([][]string, 0, len(r.Nodes))
		for _, n := range r.Nodes {
			rows = append(rows, []string{n.Name, orDash(n.Version), n.Action, waveText(n.Wave), nodetext.Clean(n.Reason)})
		}
		writeTable(w, []string{"NODE", "VERSION", "ACTION", "WAVE", "REASON"}, rows)
	}
	fmt.Fprintf(w, "\n%d to upgrade in %s, %d skipped", counts[actionUpgrade], plural(len(r.Waves), "wave"), counts[actionSkip])
	if counts[actionDefer] > 0 {
		fmt.Fprintf(w, ", %d deferred (started when they can be; each fails after %s of waiting)", counts[actionDefer], r.Timeout)
	}
	if counts[actionRefuse] > 0 {
		fmt.Fprintf(w, ", %d not attempted", counts[actionRefuse])
	}
	fmt.Fprintln(w)
	for i, wave := range r.Waves {
		if i < len(r.WaveStarts) {
			fmt.Fprintf(w, "  wave %d (starts %s): %s\n", i+1, r.WaveStarts[i], strings.Join(wave, " "))
			continue
		}
		fmt.Fprintf(w, "  wave %d: %s\n", i+1, strings.Join(wave, " "))
	}
	for _, pause := range r.Pauses {
		fmt.Fprintf(w, "  pause: %s\n", pause)
	}
	if r.Estimate.Finish != "" {
		fmt.Fprintf(w, "Estimate: %s, until %s (%s of %s per node, waiting for windows and pauses included; %s)\n",
			r.Estimate.Total, r.Estimate.Finish, plural(len(r.Waves), "wave"), r.Estimate.PerNode, r.Estimate.Source)
	} else {
		fmt.Fprintf(w, "Estimate: %s (%s x %s per node; %s)\n", r.Estimate.Total, plural(len(r.Waves), "wave"), r.Estimate.PerNode, r.Estimate.Source)
	}
	for _, warning := range slices.Sorted(slices.Values(r.Warnings)) {
		fmt.Fprintf(w, "Warning: %s\n", nodetext.Clean(warning))
	}
	return nil
}

// writeTable prints a blank line, then the rows in aligned columns under
// the header, without trailing blanks.
func writeTable(w io.Writer, header []string, rows [][]string) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	for _, row := range append([][]string{header}, rows...) {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for line := range strings.Lines(buf.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n"))
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func waveText(wave int) string {
	if wave == 0 {
		return "-"
	}
	return fmt.Sprint(wave)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describeWindows writes spec.maintenanceWindows for people, and says
// which selected nodes read them in their own zone.
func describeWindows(windows []v1alpha1.MaintenanceWindow, nodes []corev1.Node) []string {
	if len(windows) == 0 {
		return nil
	}
	out := make([]string, 0, len(windows)+1)
	for _, w := range windows {
		days := "every day"
		if len(w.Days) > 0 {
			days = strings.Join(w.Days, ",")
		}
		zone := w.TimeZone
		if zone == "" {
			zone = "UTC"
		}
		across := ""
		if w.EndTime <= w.StartTime {
			across = " (to the next day)"
		}
		out = append(out, fmt.Sprintf("%s %s-%s%s %s", days, w.StartTime, w.EndTime, across, zone))
	}
	zoned := 0
	for i := range nodes {
		if nodes[i].Labels[v1alpha1.LabelTimeZone] != "" {
			zoned++
		}
	}
	if zoned > 0 {
		out = append(out, fmt.Sprintf("read in a node's own zone where it has label %s (labelled: %s)", v1alpha1.LabelTimeZone, plural(zoned, "node")))
	}
	return out
}
