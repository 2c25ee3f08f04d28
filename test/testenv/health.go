package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrExited is returned by WaitHealthy when the process it waits for ends first.
var ErrExited = errors.New("process exited before it was healthy")

// WaitHealthy polls url until it answers 200, the process behind it exits
// (exited is closed) or timeout passes. Callers add the process's log to the
// error, which only they know.
func WaitHealthy(ctx context.Context, url string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health request for %s: %w", url, err)
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("not healthy at %s: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}
