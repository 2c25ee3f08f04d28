package jobinput

import (
	"fmt"

	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// minTargetVersion is the oldest spec.version a job may name: the runner
// drives keadm v1.21 and newer only (runner.MinKeadmMinor), and refuses an
// older one on every node after the pod has started. The controller knows
// that from the job alone, so it refuses the job before any pod exists.
var minTargetVersion = fmt.Sprintf("v1.%d.0", runner.MinKeadmMinor)

// supportedRange is docs/kubeedge.md's measured table in one line, for
// reasons.
const supportedRange = "measured: nodes on v1.20.0, v1.21.0 and v1.22.0 upgraded to v1.23.1 and v1.21.0 to v1.22.0, each with a rollback (docs/kubeedge.md)"

// TargetRefusal says why a job cannot upgrade to version ("" when it can):
// the runner drives keadm v1.21 and later v1 releases.
func TargetRefusal(version string) string {
	if nodeversion.AtLeast(version, minTargetVersion) && !nodeversion.AtLeast(version, "v2.0.0") {
		return ""
	}
	return fmt.Sprintf("spec.version %s is not supported: the installation package's keadm must be a v1 release from %s on "+
		"(keadm before v1.%d has no backup command and reports success from a failed rollback); %s",
		version, minTargetVersion, runner.MinKeadmMinor, supportedRange)
}
