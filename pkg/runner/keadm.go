package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// keadm runs the job's keadm with args on the host.
func (u *unitRunner) keadm(ctx context.Context, args ...string) cmdResult {
	return runCommand(ctx, u.log, "keadm "+strings.Join(args, " "), u.o.hostArgv(u.o.Keadm, args...))
}

// keadmMutating runs a keadm command that takes keadm's lock (backup,
// upgrade, rollback): it first clears a lock left by a keadm that no longer
// runs, clears keadm's previous verdict, and afterwards clears the lock
// again if keadm was killed before it could. It returns keadm's own verdict
// when keadm wrote one. It runs under the node lock, so no other runner of
// this project clears or takes keadm's lock meanwhile.
func (u *unitRunner) keadmMutating(ctx context.Context, args ...string) (cmdResult, *keadmReport) {
	u.clearStaleLock()
	if err := u.host.clearKeadmReport(); err != nil {
		fmt.Fprintf(u.log, "clear keadm's previous report: %v\n", err)
	}
	res := u.keadm(ctx, args...)
	if res.err != nil {
		// A killed keadm may still be in the process table for a moment;
		// wait for it, or its lock stays (seen on a real node).
		for start := time.Now(); len(u.host.keadmRunning()) > 0 && time.Since(start) < keadmExitWait; {
			time.Sleep(100 * time.Millisecond)
		}
		u.clearStaleLock()
	}
	u.host.sync()
	return res, u.host.keadmReport()
}

// keadmExitWait bounds the wait for a killed keadm to leave the process
// table.
const keadmExitWait = 5 * time.Second

func (u *unitRunner) clearStaleLock() {
	did, err := u.host.clearStaleKeadmLock()
	if err != nil {
		fmt.Fprintf(u.log, "keadm lock: %v\n", err)
	} else if did != "" {
		fmt.Fprintln(u.log, did)
	}
}

// keadmFailure says why a keadm command failed, in keadm's own words when
// its report has them: its output tail is mostly usage text.
func keadmFailure(summary string, res cmdResult, kr *keadmReport, what string) string {
	if kr != nil && !kr.Success && kr.ErrorMessage != "" {
		return fmt.Sprintf("%s: %s", summary, kr.ErrorMessage)
	}
	msg := summary
	if res.err != nil {
		msg += ": " + res.err.Error()
	}
	return withTail(msg, what, res.tail)
}

// MinKeadmMinor is the oldest keadm v1 minor release this runner drives.
// keadm v1.19 and v1.20 have no `backup` command and no --force, use --image
// as given (v1.21+ append ":" + toVersion) and report success from a failed
// rollback, so they need a different command line that has not been
// verified against a real node.
const MinKeadmMinor = 21

var keadmVersionRE = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`)

// requireSupportedKeadm asks the job's keadm for its version and refuses
// those whose command line differs from the one this runner speaks.
func (u *unitRunner) requireSupportedKeadm(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, DefaultVersionQueryTimeout)
	defer cancel()
	res := u.keadm(qctx, "version", "-o", "short")
	if res.err != nil {
		return fmt.Errorf("cannot ask keadm for its version: %w", res.err)
	}
	m := keadmVersionRE.FindStringSubmatch(res.tail)
	if m == nil {
		return fmt.Errorf("keadm printed no version (%q)", firstLine(res.tail))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major != 1 || minor < MinKeadmMinor {
		return fmt.Errorf("keadm %s in the install image is not supported: this runner drives keadm v1.%d or newer "+
			"(older keadm has no backup command and a different --image contract)", m[0], MinKeadmMinor)
	}
	if m[0] != u.o.ToVersion {
		fmt.Fprintf(u.log, "note: the install image's keadm is %s, the target is %s\n", m[0], u.o.ToVersion)
	}
	return nil
}

// keadmCopyAttempts bounds how often the unit runs keadm upgrade when keadm
// lost the race described at keadmLostCopyRace.
const keadmCopyAttempts = 3

// keadmCopyRetryDelay is the pause before such a retry: one kubelet
// housekeeping period (2 s) so the next copy container starts in a fresh
// window.
const keadmCopyRetryDelay = 2 * time.Second

// keadmLostCopyRace reports whether keadm upgrade failed while copying the
// new edgecore out of the installation-package image. keadm does that copy
// in a CRI pod sandbox of its own, which the running edgecore's kubelet
// sees as an orphaned pod and stops in its housekeeping (every 2 s). Seen on
// a real v1.21.0 node in 2 of 3 upgrades: StopPodSandbox 35 ms after
// StartContainer, and keadm failing with "failed to copy edgecore from
// /usr/local/bin/edgecore in the image ...: cannot start an already running
// container". The failure happens before keadm stops edgecore, so running
// keadm again is safe; the caller checks that edgecore is untouched.
func keadmLostCopyRace(res cmdResult, kr *keadmReport) bool {
	if res.err == nil && (kr == nil || kr.Success) {
		return false
	}
	return strings.Contains(reportOrErr(res, kr), "failed to copy edgecore from")
}

// reportOrErr is keadm's own error message when its report has one, and
// its output tail otherwise.
func reportOrErr(res cmdResult, kr *keadmReport) string {
	if kr != nil && kr.ErrorMessage != "" {
		return kr.ErrorMessage
	}
	return res.tail
}

// keadmUpgraded reports whether keadm's verdict is a finished upgrade to
// version.
func keadmUpgraded(kr *keadmReport, version string) bool {
	return kr != nil && kr.Event == "Upgrade" && kr.Success && kr.ToVersion == version
}

// KeadmBackupDir is where keadm backup edge keeps a copy of edgecore, its
// configuration and its database, in a directory named after the version
// it backed up; keadm rollback edge restores from there.
const KeadmBackupDir = "/etc/kubeedge/backup"

// newestBackup names the most recently written backup directory: the one
// this job's keadm backup just wrote. The rollback names it explicitly
// (--historical-version), so it restores this job's backup even when older
// ones are there too.
func (h host) newestBackup() string {
	entries, err := os.ReadDir(h.path(KeadmBackupDir))
	if err != nil {
		return ""
	}
	type dir struct {
		name string
		at   time.Time
	}
	var dirs []dir
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !e.IsDir() || !keadmVersionRE.MatchString(e.Name()) {
			continue
		}
		dirs = append(dirs, dir{e.Name(), info.ModTime()})
	}
	if len(dirs) == 0 {
		return ""
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].at.After(dirs[j].at) })
	return dirs[0].name
}

// syncBackup makes keadm's backup durable before edgecore is touched: keadm
// copies the files without syncing them, and a power cut soon after would
// leave a rollback with nothing to restore.
func (h host) syncBackup(version string) error {
	if version == "" {
		return nil
	}
	dir := h.path(filepath.Join(KeadmBackupDir, version))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		serr := f.Sync()
		_ = f.Close()
		if serr != nil {
			return serr
		}
	}
	return syncDir(dir)
}

// EdgecoreConfigPath is edgecore's configuration, keadm's --config default;
// keadm backup copies it into its backup directory as edgecore.yaml.
const EdgecoreConfigPath = "/etc/kubeedge/config/edgecore.yaml"

// edgecoreIdentity are the settings that tie edgecore to its cloud and to
// its node. No upgrade changes them, so the new edgecore's configuration
// must hold the backup's.
var edgecoreIdentity = [][]string{
	{"modules", "edgeHub", "websocket", "server"},
	{"modules", "edgeHub", "quic", "server"},
	{"modules", "edgeHub", "httpServer"},
	{"modules", "edged", "hostnameOverride"},
	{"modules", "edged", "nodeIP"},
	{"database", "dataSource"},
}

// configDamage says how edgecore's configuration lost what ties it to its
// cloud and node since the backup ("" when it did not, or when there is no
// backup to compare with). Found on a real node: edgecore v1.22 rewrites its
// configuration in place at its first start on a new version (its version
// field), and a power cut in that instant left a truncated file; the new
// edgecore then ran, steadily, with defaults, cut off from its cloud, which
// only a person at the node could mend.
func (h host) configDamage(backupVersion string) string {
	if backupVersion == "" {
		return ""
	}
	want, err := os.ReadFile(h.path(filepath.Join(KeadmBackupDir, backupVersion, "edgecore.yaml")))
	if err != nil {
		return ""
	}
	var before map[string]any
	if err := yaml.Unmarshal(want, &before); err != nil {
		return ""
	}
	data, err := os.ReadFile(h.path(EdgecoreConfigPath))
	if err != nil {
		return fmt.Sprintf("edgecore's configuration %s cannot be read: %v", EdgecoreConfigPath, err)
	}
	var now map[string]any
	if err := yaml.Unmarshal(data, &now); err != nil {
		return fmt.Sprintf("edgecore's configuration %s is no longer valid YAML (%d bytes): %v", EdgecoreConfigPath, len(data), err)
	}
	for _, key := range edgecoreIdentity {
		b, a := lookup(before, key), lookup(now, key)
		if b != a {
			return fmt.Sprintf("edgecore's configuration %s changed %s from %q to %q since the backup", EdgecoreConfigPath, strings.Join(key, "."), b, a)
		}
	}
	return ""
}

// lookup is the value at key in a YAML document, as text; "" when absent.
func lookup(doc map[string]any, key []string) string {
	var v any = doc
	for _, k := range key {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}
