package main

import (
	"os"

	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

func main() {
	os.Exit(runner.Main(os.Args[1:], os.Stdout, os.Stderr))
}
