// Command nodeupgrade-controller runs the NodeUpgradeJob controller, in a
// cluster (as the Deployment in config/) or against any kubeconfig.
package main

import (
	"flag"
	"os"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
)

func main() {
	// The global flag set, because controller-runtime registers --kubeconfig there.
	klog.InitFlags(nil)
	cfg := manager.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(klog.NewKlogr())
	log := klog.Background().WithName("setup")

	restCfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Loading the kubeconfig")
		os.Exit(1)
	}
	mgr, err := manager.New(restCfg, cfg)
	if err != nil {
		log.Error(err, "Building the manager")
		os.Exit(1)
	}
	log.Info("Starting nodeupgrade-controller", "version", orUnset(manager.Version), "namespace", cfg.Controller.Namespace,
		"runnerImage", cfg.Controller.RunnerImage, "leaderElect", cfg.LeaderElect)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

func orUnset(v string) string {
	if v == "" {
		return "(not set at build time)"
	}
	return v
}
