package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaintenanceWindow (nodeupgrade's, as in v1alpha1) is a time of the week when nodes may start their
// upgrade (spec.maintenanceWindows): on each of Days, from StartTime to
// EndTime, on the wall clock of TimeZone, or of the node's own zone when
// the node carries v1alpha1.LabelTimeZone. A node is dispatched only inside one of
// the job's windows; a node already dispatched finishes outside it.
//
// An EndTime before StartTime is a window across midnight: it opens on a
// listed day and closes on the next. EndTime "24:00" is the end of the
// day. StartTime equal to EndTime is refused: it would be either empty or
// a whole day. Times follow the zone's daylight-saving changes: a window
// 01:00-04:00 lasts two hours on the night the clocks go forward by one
// and four on the night they go back; a wall time the change skips is
// taken one hour later (Go's time.Date).
//
// +kubebuilder:validation:XValidation:rule="self.startTime != self.endTime",message="endTime must differ from startTime (an endTime before startTime is a window across midnight; 00:00 to 24:00 is a whole day)",fieldPath=".endTime"
type MaintenanceWindow struct {
	// Days are the days of the week the window opens on, lower case
	// ("monday" ... "sunday"); empty means every day.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:items:Enum=monday;tuesday;wednesday;thursday;friday;saturday;sunday
	Days []string `json:"days,omitempty"`
	// StartTime is when the window opens, HH:MM on a 24-hour clock.
	// +required
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	StartTime string `json:"startTime"`
	// EndTime is when the window closes, HH:MM on a 24-hour clock, or
	// 24:00. Before StartTime: the window closes the next day.
	// +required
	// +kubebuilder:validation:Pattern=`^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$`
	EndTime string `json:"endTime"`
	// TimeZone is the IANA time zone of StartTime and EndTime, such as
	// Europe/Berlin; empty means UTC. A node labelled v1alpha1.LabelTimeZone uses its
	// own zone instead. The controller refuses a job whose zone it does not
	// know (the API server cannot check zone names).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`
	TimeZone string `json:"timeZone,omitempty"`
}

// Canary (nodeupgrade's, as in v1alpha1) is the job's first wave (spec.canary): its nodes are upgraded
// before any other, and when the last of them is done the controller
// suspends the job (sets spec.suspend) with the Canary condition saying
// how the wave went. An operator resumes it by setting spec.suspend back
// to false (`kubectl nodeupgrade resume`), or, with SoakSeconds, the
// controller resumes it itself that long after the wave if every canary
// node succeeded. A canary node that fails pauses the job; it does not
// stop it (failureTolerate is not applied during the wave).
//
// +kubebuilder:validation:XValidation:rule="[has(self.count), has(self.percent), has(self.selector)].filter(x, x).size() == 1",message="exactly one of spec.canary.count, spec.canary.percent and spec.canary.selector must be set"
type Canary struct {
	// Count is how many nodes the wave has: the first ones in the job's
	// order (by name) that need the upgrade.
	// +optional
	// +kubebuilder:validation:Minimum=1
	Count *int32 `json:"count,omitempty"`
	// Percent is the wave's share of the nodes that need the upgrade,
	// rounded up (at least one node).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=99
	Percent *int32 `json:"percent,omitempty"`
	// Selector picks the wave's nodes by their labels, among the job's
	// nodes, when the job starts.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// SoakSeconds, when not 0, resumes the job that long after the wave
	// ended if every canary node succeeded. 0 leaves it suspended for an
	// operator. At most 7 days.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=604800
	SoakSeconds int64 `json:"soakSeconds,omitempty"`
}
