package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The job's time on a node is a budget, not an instant. The controller used
// to pass an absolute deadline from its own clock, which the node compared
// with its own: many edge devices have no battery-backed clock and boot with
// a wrong time, and five minutes of skew made every step refuse (or let keadm
// start and killed it 30 s later). The runner now gets a duration and counts
// it on the node's monotonic clock (CLOCK_BOOTTIME, which also runs while the
// machine is suspended) from the moment the job's first step started on the
// node. The start is recorded on the host, so a container the kubelet starts
// again does not restart the count. A reboot does: CLOCK_BOOTTIME starts from
// zero, so a job whose node rebooted (a different boot ID) has no budget
// left to start anything new; its unit still finishes or rolls back what was
// started.
//
// The controller keeps its own deadline on its own clock. A pod that starts
// late (a slow pull) gets its whole budget from its start, so the node may
// still work after the controller's deadline; the controller then reports
// what the node later shows (see pkg/rollout).

// budgetRecord is BudgetFile: when the job's time on the node began.
type budgetRecord struct {
	// BootID is the node's boot ID at the start.
	BootID string `json:"bootID"`
	// StartBoottime is CLOCK_BOOTTIME at the start.
	StartBoottime time.Duration `json:"startBoottime"`
	Budget        time.Duration `json:"budget"`
	// NodeClock and IssuedAt are the node's wall clock at the start and the
	// controller's when it made the pod, for the log only.
	NodeClock string `json:"nodeClock"`
	IssuedAt  string `json:"issuedAt,omitempty"`
}

// bootIDPath is where the kernel publishes the boot ID.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// bootClock reads the node's boot ID and its monotonic boot time.
func (h host) bootClock() (string, time.Duration, error) {
	id, err := os.ReadFile(h.path(bootIDPath))
	if err != nil {
		return "", 0, fmt.Errorf("read the boot ID: %w", err)
	}
	boot, err := bootTime()
	if err != nil {
		return "", 0, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	return strings.TrimSpace(string(id)), boot, nil
}

// startBudget records when the job's time on the node began, unless an
// earlier run of one of its steps did (then that record stands). It logs the
// skew between the node's clock and the controller's.
func (s jobState) startBudget(h host, o Options, log io.Writer) (budgetRecord, error) {
	if rec, err := s.readBudget(); err == nil {
		return rec, nil
	}
	bootID, now, err := h.bootClock()
	if err != nil {
		return budgetRecord{}, err
	}
	rec := budgetRecord{BootID: bootID, StartBoottime: now, Budget: o.Budget, NodeClock: time.Now().UTC().Format(time.RFC3339Nano)}
	if !o.IssuedAt.IsZero() {
		rec.IssuedAt = o.IssuedAt.UTC().Format(time.RFC3339)
		skew := time.Since(o.IssuedAt).Round(time.Second)
		fmt.Fprintf(log, "node clock %s, pod issued by the controller at %s: the node's clock is %s ahead of the controller's, "+
			"less the time the pod took to start (only logged: the budget of %s counts on the node's monotonic clock)\n",
			rec.NodeClock, rec.IssuedAt, skew, o.Budget)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return budgetRecord{}, err
	}
	// Created once: the first step to start wins, the others read its record.
	if err := createOnce(s.path(BudgetFile), data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return s.readBudget()
		}
		return budgetRecord{}, err
	}
	return rec, nil
}

func (s jobState) readBudget() (budgetRecord, error) {
	data, err := readNoFollow(s.path(BudgetFile))
	if err != nil {
		return budgetRecord{}, err
	}
	var rec budgetRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.BootID == "" {
		return budgetRecord{}, fmt.Errorf("%s is not a budget record", BudgetFile)
	}
	return rec, nil
}

// left is the budget that remains now; when none does, why says so.
func (b budgetRecord) left(h host) (left time.Duration, why string) {
	bootID, now, err := h.bootClock()
	if err != nil {
		return 0, err.Error()
	}
	if bootID != b.BootID || now < b.StartBoottime {
		return 0, "the node rebooted since the job's first step started on it"
	}
	left = b.Budget - (now - b.StartBoottime)
	if left <= 0 {
		return 0, fmt.Sprintf("the job's budget of %s on this node has run out", b.Budget)
	}
	return left, ""
}

// createOnce writes data to path only if path does not exist yet, whole
// and durable: a temporary file is written, synced and then linked to path,
// which fails if path exists.
func createOnce(path string, data []byte) error {
	tmp, err := writeTemp(path, data, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
