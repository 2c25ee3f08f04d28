// Package monitoring runs a real Prometheus (Debian's build, extracted into
// bin/ by hack/prometheus.sh) against the real controller, and asks it the
// queries of the Grafana dashboard in config/monitoring: the dashboard and
// the alerts are checked against what the controller really exports, under
// the labels a real scrape gives it. test/monitoring's own tests use the
// local world (make test); test/kubeedge's in-cluster world scrapes the
// controller pods the chart installed.
package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Files of config/monitoring.
var (
	AlertsFile     = filepath.Join(testenv.RepoRoot(), "config", "monitoring", "alerts.yaml")
	AlertTestsFile = filepath.Join(testenv.RepoRoot(), "config", "monitoring", "alerts_test.yaml")
	DashboardFile  = filepath.Join(testenv.RepoRoot(), "config", "monitoring", "dashboard.json")
)

// Prometheus is one running Prometheus server on loopback.
type Prometheus struct {
	URL     string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// Start runs Prometheus with scrapeConfigs (YAML list items, indented for
// `scrape_configs:`) and the project's alert rules, evaluated every second,
// its data and log under dir. It returns once Prometheus is ready.
func Start(ctx context.Context, dir, scrapeConfigs string) (*Prometheus, error) {
	bin, err := testenv.Prometheus()
	if err != nil {
		return nil, err
	}
	addr, err := testenv.FreeLocalAddr()
	if err != nil {
		return nil, err
	}
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n- %s\nscrape_configs:\n%s", AlertsFile, scrapeConfigs)
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	p := &Prometheus{URL: "http://" + addr, logPath: filepath.Join(dir, "prometheus.log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(filepath.Join(bin, "prometheus"),
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.enable-lifecycle",
	)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// Its own process group, and killed with the test process.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	go func() {
		_ = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	if err := testenv.WaitHealthy(ctx, p.URL+"/-/ready", time.Minute, p.exited); err != nil {
		p.Stop()
		return nil, fmt.Errorf("prometheus not ready: %w\n%s", err, testenv.TailFile(p.logPath, 4096))
	}
	return p, nil
}

// Stop ends Prometheus (SIGTERM, then SIGKILL after 10s) and waits for it.
func (p *Prometheus) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// Log is the end of Prometheus's log, for a failed test.
func (p *Prometheus) Log() string { return testenv.TailFile(p.logPath, 8192) }

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

func (p *Prometheus) get(ctx context.Context, path string, params url.Values, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, into)
}

// Series is one result series of a query: its labels and values (NaN
// dropped).
type Series struct {
	Labels map[string]string
	Values []float64
}

// QueryRange evaluates expr from start to end every step.
func (p *Prometheus) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	params := url.Values{
		"query": {expr},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	if err := p.get(ctx, "/api/v1/query_range", params, &data); err != nil {
		return nil, err
	}
	var out []Series
	for _, r := range data.Result {
		s := Series{Labels: r.Metric}
		for _, v := range r.Values {
			text, _ := v[1].(string)
			if f, err := strconv.ParseFloat(text, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				s.Values = append(s.Values, f)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Query evaluates expr now.
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Series, error) {
	now := time.Now()
	return p.QueryRange(ctx, expr, now, now, time.Second)
}

// Rule is a loaded rule's state, as /api/v1/rules reports it.
type Rule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"` // alerts: inactive, pending, firing
	Alerts    []struct {
		Labels map[string]string `json:"labels"`
		State  string            `json:"state"`
	} `json:"alerts"`
}

// Rules lists every loaded rule of the rule files.
func (p *Prometheus) Rules(ctx context.Context) ([]Rule, error) {
	var data struct {
		Groups []struct {
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get(ctx, "/api/v1/rules", nil, &data); err != nil {
		return nil, err
	}
	var out []Rule
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// ActiveTargets counts the scrape targets that are up.
func (p *Prometheus) ActiveTargets(ctx context.Context) (up int, all int, err error) {
	var data struct {
		ActiveTargets []struct {
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := p.get(ctx, "/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
		return 0, 0, err
	}
	for _, t := range data.ActiveTargets {
		if t.Health == "up" {
			up++
		}
	}
	return up, len(data.ActiveTargets), nil
}

// Query of the dashboard: one panel target.
type DashboardQuery struct {
	Panel string
	RefID string
	Expr  string
}

func (q DashboardQuery) String() string { return fmt.Sprintf("%q %s: %s", q.Panel, q.RefID, q.Expr) }

// Dashboard is the part of a Grafana dashboard's JSON the tests read.
type Dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		GridPos struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// ReadDashboard reads config/monitoring/dashboard.json.
func ReadDashboard() (*Dashboard, error) {
	raw, err := os.ReadFile(DashboardFile)
	if err != nil {
		return nil, err
	}
	d := &Dashboard{}
	if err := json.Unmarshal(raw, d); err != nil {
		return nil, fmt.Errorf("%s: %w", DashboardFile, err)
	}
	return d, nil
}

// Queries are the dashboard's queries with Grafana's variables replaced as
// Grafana would for "All jobs" over window: $__range by the window,
// $__rate_interval by rate (at least four scrape intervals in Grafana).
func (d *Dashboard) Queries(window, rate time.Duration) []DashboardQuery {
	r := strings.NewReplacer(
		"$__rate_interval", promDuration(rate),
		"$__range", promDuration(window),
		`=~"$job"`, `=~".*"`,
	)
	var out []DashboardQuery
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, DashboardQuery{Panel: p.Title, RefID: t.RefID, Expr: r.Replace(t.Expr)})
		}
	}
	return out
}

func promDuration(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) + "s" }

// CheckQueries evaluates every query from start to now and returns one
// error per query that gave no value at all (no series, or only NaN).
func (p *Prometheus) CheckQueries(ctx context.Context, queries []DashboardQuery, start time.Time) []error {
	var errs []error
	for _, q := range queries {
		series, err := p.QueryRange(ctx, q.Expr, start, time.Now(), 2*time.Second)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q, err))
			continue
		}
		values := 0
		for _, s := range series {
			values += len(s.Values)
		}
		if values == 0 {
			errs = append(errs, fmt.Errorf("%s: no data (%d series, all empty or NaN)", q, len(series)))
		}
	}
	return errs
}

// RefuseStatusWrites is a ValidatingAdmissionPolicy and its binding that
// make the API server refuse every status write of the NodeUpgradeJob job
// (reason Forbidden): a real refusal, for the dashboard's and the alerts'
// status-write failures. `kubectl apply -f -` it; delete both by name
// RefuseStatusWritesName.
func RefuseStatusWrites(job string) string {
	return fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: %[1]s
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [operations.kubeedge.io]
      apiVersions: ["*"]
      operations: [UPDATE]
      resources: [nodeupgradejobs/status]
  validations:
  - expression: "object.metadata.name != '%[2]s'"
    message: the test refuses this job's status writes
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: %[1]s
spec:
  policyName: %[1]s
  validationActions: [Deny]
`, RefuseStatusWritesName, job)
}

// RefuseStatusWritesName names RefuseStatusWrites' policy and binding.
const RefuseStatusWritesName = "nodeupgrade-test-refuse-status-writes"
