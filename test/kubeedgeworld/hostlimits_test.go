package kubeedgeworld

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestParseHostLimitsStateDropsDeadHolders(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := os.Getpid()
	state := fmt.Sprintf("128\n%d\n%d\n%d\n", live, dead.Process.Pid, live)
	original, holders := parseHostLimitsState(state)
	if original != 128 {
		t.Errorf("original = %d, want 128", original)
	}
	if want := []int{live, live}; !slices.Equal(holders, want) {
		t.Errorf("holders = %v, want %v (the exited pid %d pruned)", holders, want, dead.Process.Pid)
	}
	if original, holders := parseHostLimitsState(""); original != 0 || holders != nil {
		t.Errorf("empty state = %d %v, want 0 and no holders", original, holders)
	}
}
