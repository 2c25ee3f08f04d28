// Command nodeupgrade-runner runs one step of an edge node upgrade (check,
// backup or upgrade) inside the upgrade pod and reports it as a JSON
// termination message; see package runner for flags, host paths and exit codes.
package main
