package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
)

// defaultNamespace is the controller's default --namespace, where the
// upgrade pods are.
const defaultNamespace = v1alpha1.DefaultNamespace

// app is what every command works with. Tests build it around a real API
// server; main builds it from the kubeconfig flags.
type app struct {
	client client.WithWatch
	// kube reads pod logs, which the controller-runtime client cannot.
	kube  kubernetes.Interface
	clock clock.PassiveClock
	in    io.Reader
	out   io.Writer
	// namespace holds the upgrade pods (the controller's --namespace).
	namespace string
	// edgeNodeLabel is the controller's --edge-node-label.
	edgeNodeLabel string
	// edgeNodeLabelSet: --edge-node-label was given; else a plan takes the
	// controller's from its Deployment.
	edgeNodeLabelSet bool
	// policy holds plan's flags for the controller's image allow-list.
	policy policyFlags
}

func main() {
	// Ctrl-C ends `status -w` (and any request) through the context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		// One line, so a script's log shows the whole refusal; cleaned, as
		// an error may quote a node's text.
		fmt.Fprintln(os.Stderr, "error: "+nodetext.Clean(strings.ReplaceAll(err.Error(), "\n", " ")))
		os.Exit(1)
	}
}

func newRootCommand(in io.Reader, out, errOut io.Writer) *cobra.Command {
	kc := &kubeconfigFlags{}
	a := &app{clock: clock.RealClock{}, in: in, out: out}
	root := &cobra.Command{
		Use:           "kubectl-nodeupgrade",
		Short:         "Plan, follow and steer NodeUpgradeJobs",
		SilenceUsage:  true,
		SilenceErrors: true,
		// kubectl shows plugins as "kubectl nodeupgrade".
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl nodeupgrade"},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.edgeNodeLabelSet = cmd.Flags().Changed("edge-node-label")
			return a.connect(kc)
		},
	}
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	kc.bind(root.PersistentFlags())
	root.PersistentFlags().Lookup("namespace").Usage = "Namespace of the upgrade pods, the controller's --namespace (default " + defaultNamespace + ")"
	root.CompletionOptions.DisableDefaultCmd = true
	root.PersistentFlags().StringVar(&a.edgeNodeLabel, "edge-node-label", controller.DefaultEdgeNodeLabel,
		"The controller's --edge-node-label: nodes without it are skipped")
	a.bindPolicyFlags(root.PersistentFlags())
	root.AddCommand(a.planCommand(), a.statusCommand(), a.pauseCommand(true), a.pauseCommand(false),
		a.retryCommand(), a.logsCommand(), a.approveCommand(), a.historyCommand())
	return root
}

// kubeconfigFlags are kubectl's own connection flags (--kubeconfig,
// --context, --namespace, --as, --server, ...), from client-go's clientcmd,
// which kubectl also builds them from. cli-runtime's ConfigFlags would add
// kustomize and a disk cache to the build for the same flags.
type kubeconfigFlags struct {
	path      string
	overrides clientcmd.ConfigOverrides
}

func (k *kubeconfigFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&k.path, clientcmd.RecommendedConfigPathFlag, "", "Path to the kubeconfig file to use")
	clientcmd.BindOverrideFlags(&k.overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
}

func (k *kubeconfigFlags) loader() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.path
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &k.overrides)
}

// connect builds the clients from the kubeconfig flags.
func (a *app) connect(k *kubeconfigFlags) error {
	cfg, err := k.loader().ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if a.client, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if a.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	// The job is cluster-scoped; -n names where the controller keeps its
	// pods, for those who run it outside its default namespace. The
	// kubeconfig context's namespace is not used: it is usually "default".
	a.namespace = defaultNamespace
	if k.overrides.Context.Namespace != "" {
		a.namespace = k.overrides.Context.Namespace
	}
	return nil
}

// requestTimeout bounds one command's API calls (not -w, which follows the
// job for as long as it runs).
const requestTimeout = 30 * time.Second

func commandContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), requestTimeout)
}

// errAborted is returned when the user declines a confirmation.
var errAborted = errors.New("aborted: nothing was created")
