package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A job with spec.requireConfirmation waits on each node, after its check
// and before anything on the node changes, for a confirmation. It comes
// either way, whichever is first:
//
//   - from the cloud: the controller sets the pod's ApprovedAnnotation once
//     the node is approved (kubectl nodeupgrade approve) and a concurrency
//     slot is free for it; the confirm container reads the pod's annotations
//     through a downwardAPI volume;
//   - on the node, without the cloud: a file named after the job in
//     ApprovalsDir (touch /var/lib/nodeupgrade/approved/JOB), which the
//     confirm container consumes. The person at the node decides: such a
//     node starts at once, even past the job's concurrency.
//
// The confirm container records the confirmation in the pod's handoff
// directory (it cannot write the job's records); the backup container
// records it on the host, where a container run again, the job's next pod
// on the node or a boot finds it. Nothing is recorded while waiting: a pod
// killed or a node rebooted in the wait changes nothing, and the job's next
// pod on the node waits again. The backup and upgrade containers wait for
// the record before their budget starts (waitConfirmed), so the wait spends
// none of it.

// confirmPoll is how often the confirm step looks for a confirmation.
const confirmPoll = 250 * time.Millisecond

// confirm is the confirm container: it waits for the job's confirmation
// and records how it came.
func (r *stepRunner) confirm(ctx context.Context, rep Report) (Report, int) {
	local := r.host.path(filepath.Join(ApprovalsDir, r.o.JobName))
	fmt.Fprintf(r.log, "waiting for the confirmation of job %s on this node: `kubectl nodeupgrade approve %s NODE` from the cloud, "+
		"or on this node: touch %s\n", r.o.JobName, r.o.JobName, filepath.Join(ApprovalsDir, r.o.JobName))
	for {
		if rec, ok := r.handoff().recorded(StepConfirm); ok {
			return rec.Report, rec.ExitCode // a container run again in the same pod
		}
		how := ""
		switch approved, err := approvedFromCloud(filepath.Join(r.o.PodInfoDir, PodInfoAnnotationsFile)); {
		case err != nil:
			fmt.Fprintf(r.log, "read the pod's annotations: %v\n", err)
		case approved:
			how = "confirmed from the cloud (annotation " + ApprovedAnnotation + ")"
		}
		if how == "" && approvedOnNode(local, r.log) {
			how = "confirmed on the node (" + filepath.Join(ApprovalsDir, r.o.JobName) + ")"
		}
		if how != "" {
			rep.Result, rep.Reason = ResultSucceeded, how
			fmt.Fprintln(r.log, how)
			if err := r.handoff().record(StepConfirm, rep, ExitOK); err != nil {
				// The report still reaches the controller; the backup
				// container then waits, and the pod's next run asks again.
				fmt.Fprintf(r.log, "hand the confirmation to the backup container: %v\n", err)
			}
			return rep, ExitOK
		}
		select {
		case <-ctx.Done():
			return stoppedWaiting(rep)
		case <-time.After(confirmPoll):
		}
	}
}

// stoppedWaiting is the report of a container stopped while its job waited
// for the confirmation: nothing ran and nothing is recorded.
func stoppedWaiting(rep Report) (Report, int) {
	rep.Result = ResultFailed
	rep.Reason = "stopped while waiting for the job's confirmation; nothing on the node changed"
	return rep, ExitStoppedWaiting
}

// waitConfirmed waits, without a budget, for the confirm step's record; ok
// is false when the container was stopped first.
func (r *stepRunner) waitConfirmed(ctx context.Context, rep Report) (Report, int, bool) {
	logged := false
	for {
		if rec, ok := r.recorded(StepConfirm); ok {
			if rec.ExitCode != ExitOK {
				rep.Result, rep.Reason = ResultFailed, fmt.Sprintf("not run: step %s failed (exit %d)", StepConfirm, rec.ExitCode)
				return rep, ExitNotRun, false
			}
			return rep, ExitOK, true
		}
		if !logged {
			fmt.Fprintf(r.log, "waiting for the job's confirmation before step %s\n", rep.Step)
			logged = true
		}
		select {
		case <-ctx.Done():
			rep, code := stoppedWaiting(rep)
			return rep, code, false
		case <-time.After(confirmPoll):
		}
	}
}

// approvedFromCloud reads the pod's annotations as the kubelet writes them
// in a downwardAPI file (key="quoted value" lines) and reports whether
// ApprovedAnnotation is "true". A file not there yet is no confirmation.
// The file is a symlink: the kubelet writes each version of the volume in
// a directory of its own and swaps the ..data link to it (measured on real
// edgecore: a no-follow read of it failed, and the pod never went on). The
// volume is the kubelet's, mounted read-only, so following it is safe.
func approvedFromCloud(file string) (bool, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordBytes))
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(string(data)) {
		key, quoted, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || key != ApprovedAnnotation {
			continue
		}
		value, err := strconv.Unquote(quoted)
		return err == nil && value == "true", nil
	}
	return false, nil
}

// approvedOnNode reports whether the node's own confirmation of the job is
// there (a regular file, not a symlink) and consumes it, so that a later
// job of the same name is not confirmed by it.
func approvedOnNode(path string, log io.Writer) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	if err := os.Remove(path); err != nil {
		fmt.Fprintf(log, "consume the confirmation %s: %v\n", path, err)
	}
	return true
}
