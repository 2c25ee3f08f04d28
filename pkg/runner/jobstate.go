package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// jobState records each step's outcome on the host, so that a step runs at
// most once per job and node. Real edgecore removes a pod's finished
// containers when keadm restarts it, and the kubelet that comes back then
// runs a container again (seen on a real node: the upgrade container ran a
// second time with Attempt 1, in a restartPolicy Never pod). A repeated step
// finds its record and reports it instead of redoing the work.
type jobState struct {
	dir string // the job directory as seen by the runner
}

// stepRecord is one step's recorded outcome.
type stepRecord struct {
	ExitCode int    `json:"exitCode"`
	Report   Report `json:"report"`
}

func (s jobState) recordPath(step Step) string  { return filepath.Join(s.dir, StepRecordFile(step)) }
func (s jobState) startedPath(step Step) string { return filepath.Join(s.dir, StepStartedFile(step)) }

// recorded returns the recorded outcome of step, if any.
func (s jobState) recorded(step Step) (stepRecord, bool) {
	data, err := os.ReadFile(s.recordPath(step))
	if err != nil {
		return stepRecord{}, false
	}
	var rec stepRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Report.Step == "" {
		return stepRecord{}, false
	}
	return rec, true
}

// record saves step's outcome; written to a temporary file and renamed, so a
// reader never sees half a record.
func (s jobState) record(step Step, rep Report, code int) error {
	data, err := json.Marshal(stepRecord{ExitCode: code, Report: rep})
	if err != nil {
		return err
	}
	tmp := s.recordPath(step) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.recordPath(step))
}

// markStarted notes that step began changing the node, so that a later run
// of the same step knows an earlier one was interrupted.
func (s jobState) markStarted(step Step) error {
	return os.WriteFile(s.startedPath(step), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

func (s jobState) wasStarted(step Step) bool {
	_, err := os.Stat(s.startedPath(step))
	return err == nil
}

// lockPoll is how often a step waiting for the job lock tries again.
const lockPoll = 500 * time.Millisecond

// lock takes the job's step lock, waiting while another run of this job's
// pod (a container the kubelet started again) holds it, until ctx ends. The
// lock is a flock, so the kernel releases it when its holder dies, however
// it dies.
func (s jobState) lock(ctx context.Context) (unlock func(), err error) {
	return flockWait(ctx, filepath.Join(s.dir, JobLockFile), "another run of this job's upgrade on this node still holds", nil)
}

// lockNode takes the node's lock, shared by every job: one step of one job
// runs on a node at a time. The controller keeps a node busy while it sees
// another job's pod there, but on real KubeEdge a deleted pod leaves the API
// at once (edgecore deletes it with grace period 0) while its runner still
// stops keadm or rolls back for up to its grace period; this lock makes the
// next job's runner wait for that one.
func (s jobState) lockNode(ctx context.Context, log io.Writer) (unlock func(), err error) {
	path := filepath.Join(filepath.Dir(s.dir), NodeLockFile)
	return flockWait(ctx, path, "another job's upgrade step on this node still holds", func() {
		fmt.Fprintf(log, "waiting for another job's upgrade step on this node to end (it holds %s)\n", path)
	})
}

// flockWait takes an exclusive flock on path, polling until ctx ends;
// onWait, if set, runs once when the lock is busy.
func flockWait(ctx context.Context, path, heldBy string, onWait func()) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		if onWait != nil {
			onWait()
			onWait = nil
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("%s %s: %w", heldBy, f.Name(), ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// removeKeadm deletes the job's copy of keadm (about 100 MB) once the pod's
// work is over; the small records stay.
func (s jobState) removeKeadm() error {
	if err := os.Remove(filepath.Join(s.dir, "keadm")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
