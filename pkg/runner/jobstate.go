package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// jobState is the job's directory on the host: each step's outcome, so that
// a step runs at most once per job and node (real edgecore removes a pod's
// finished containers when keadm restarts it, and the kubelet that comes back
// then runs a container again: seen on a real node, the upgrade container ran
// a second time with Attempt 1 in a restartPolicy Never pod); the unit's
// plan, the budget, the upgrade's guard and a cancellation.
//
// Records are written whole and synced (a temporary file, fsync, rename,
// fsync of the directory), because the unit reads them again after a power
// cut, and read without following symlinks.
type jobState struct {
	dir string // the job directory as seen by the runner
}

func (s jobState) path(name string) string { return filepath.Join(s.dir, name) }

// binDir is the job's binaries directory (JobBinDir) as seen by the runner.
func (s jobState) binDir() string { return filepath.Join(s.dir, "bin") }

// stepRecord is one step's recorded outcome.
type stepRecord struct {
	ExitCode int    `json:"exitCode"`
	Report   Report `json:"report"`
}

// recorded returns the recorded outcome of step, if any.
func (s jobState) recorded(step Step) (stepRecord, bool) {
	data, err := readNoFollow(s.path(StepRecordFile(step)))
	if err != nil {
		return stepRecord{}, false
	}
	var rec stepRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Report.Step == "" {
		return stepRecord{}, false
	}
	return rec, true
}

// record saves step's outcome, whole and durable.
func (s jobState) record(step Step, rep Report, code int) error {
	data, err := json.Marshal(stepRecord{ExitCode: code, Report: rep})
	if err != nil {
		return err
	}
	return writeFileDurable(s.path(StepRecordFile(step)), data)
}

// recordIfAbsent records step's outcome unless it has one: for a step that
// will not run because of another's outcome.
func (s jobState) recordIfAbsent(step Step, rep Report, code int) error {
	if _, ok := s.recorded(step); ok {
		return nil
	}
	return s.record(step, rep, code)
}

// markStarted notes, durably, that step began changing the node.
func (s jobState) markStarted(step Step) error {
	return writeFileDurable(s.path(StepStartedFile(step)), []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"))
}

func (s jobState) wasStarted(step Step) bool {
	_, err := os.Lstat(s.path(StepStartedFile(step)))
	return err == nil
}

// requestCancel asks the unit not to start anything new.
func (s jobState) requestCancel(why string) error {
	return writeFileDurable(s.path(CancelFile), []byte(why+"\n"))
}

// cancelled returns why the job's work on the node was cancelled, if it was.
func (s jobState) cancelled() (string, bool) {
	data, err := readNoFollow(s.path(CancelFile))
	if err != nil {
		return "", false
	}
	return firstLine(string(data)), true
}

// lockPoll is how often a runner waiting for a lock tries again.
const lockPoll = 500 * time.Millisecond

// lock takes the job's lock, waiting while another runner of this job
// holds it, until ctx ends. The lock is a flock, so the kernel releases it
// when its holder dies, however it dies.
func (s jobState) lock(ctx context.Context) (unlock func(), err error) {
	return flockWait(ctx, s.path(JobLockFile), "another runner of this job on this node still holds", nil)
}

// lockNode takes the node's lock, shared by every job: one job's unit (or
// check) runs on a node at a time. The controller lets one upgrade pod exist
// per node, but a deleted pod leaves the API while the unit it launched
// still upgrades or rolls back on the host; this lock makes the next job
// wait for it.
func (s jobState) lockNode(ctx context.Context, log io.Writer) (unlock func(), err error) {
	path := filepath.Join(filepath.Dir(s.dir), NodeLockFile)
	return flockWait(ctx, path, "another job's upgrade on this node still holds", func() {
		fmt.Fprintf(log, "waiting for another job's upgrade on this node to end (it holds %s)\n", path)
	})
}

// flockWait takes an exclusive flock on path, polling until ctx ends;
// onWait, if set, runs once when the lock is busy.
func flockWait(ctx context.Context, path, heldBy string, onWait func()) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|oNoFollow, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := tryLock(f)
		if err == nil {
			return func() {
				_ = releaseLock(f)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, errLockBusy) {
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

// removeBinaries deletes the job's copies of keadm and the runner (about
// 150 MB) once the job's work on the node is over; the small records stay.
func (s jobState) removeBinaries() error {
	return os.RemoveAll(s.binDir())
}

// collectOldJobs removes what earlier jobs left in jobsDir, except the job
// keep names and any job whose unit is still installed (running, or waiting
// for the next boot to finish its upgrade): their binaries always (a pod
// killed before its job's unit started leaves them), and their whole
// directories beyond the keepRecords most recent. It returns what it
// removed, for the log.
func collectOldJobs(jobsDir, unitDir, keep string, keepRecords int) ([]string, error) {
	entries, err := os.ReadDir(jobsDir)
	if err != nil {
		return nil, err
	}
	type job struct {
		uid  string
		time time.Time
	}
	var jobs []job
	var removed []string
	var errs []error
	for _, e := range entries {
		uid := e.Name()
		if !e.IsDir() || uid == keep || !jobUIDRE.MatchString(uid) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(unitDir, UnitName(uid))); err == nil {
			continue
		}
		// The directory's time before its binaries go (removing them
		// touches it).
		info, err := e.Info()
		if err != nil {
			continue
		}
		jobs = append(jobs, job{uid, info.ModTime()})
		bin := filepath.Join(jobsDir, uid, "bin")
		if _, err := os.Lstat(bin); err == nil {
			if err := os.RemoveAll(bin); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, uid+"/bin")
			}
		}
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].time.After(jobs[j].time) })
	// The job being run counts as one of the kept.
	for i, j := range jobs {
		if i+1 < keepRecords {
			continue
		}
		if err := os.RemoveAll(filepath.Join(jobsDir, j.uid)); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, j.uid)
		}
	}
	return removed, errors.Join(errs...)
}

// readNoFollow reads a record, refusing a symlink in its place.
func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxRecordBytes))
}

// maxRecordBytes bounds what is read of a record: a report is at most
// MaxTerminationMessageBytes, and a file that is much larger is not ours.
const maxRecordBytes = 64 << 10

// writeFileDurable replaces path with data, mode 0644, whole and durable.
func writeFileDurable(path string, data []byte) error {
	return replaceDurably(path, data, 0o644)
}

// replaceDurably replaces path with data and mode, whole and durable: a
// temporary file beside it, synced, renamed over it, and the directory
// synced.
func replaceDurably(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new temporary file beside path, with mode,
// and syncs it.
func writeTemp(path string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
