package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
)

func (a *app) historyCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "history NODE",
		Short: "Show a node's last upgrade (job, from, to, result, time), recorded on the Node itself",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx, cancel := commandContext(cmd)
			defer cancel()
			node := &corev1.Node{}
			if err := a.client.Get(ctx, client.ObjectKey{Name: args[0]}, node); err != nil {
				return apiError(err, "get", "node "+args[0])
			}
			return writeHistory(a.out, node, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: table (default), json or yaml")
	return cmd
}

// writeHistory prints the node's v1alpha1.AnnotationLastUpgrade.
func writeHistory(w io.Writer, node *corev1.Node, output string) error {
	raw, ok := node.Annotations[v1alpha1.AnnotationLastUpgrade]
	if !ok {
		fmt.Fprintf(w, "node %s has no upgrade recorded (annotation %s)\n", node.Name, v1alpha1.AnnotationLastUpgrade)
		return nil
	}
	var r v1alpha1.NodeUpgradeRecord
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return fmt.Errorf("node %s: annotation %s is not an upgrade record: %w", node.Name, v1alpha1.AnnotationLastUpgrade, err)
	}
	if output == "json" || output == "yaml" {
		return writeStructured(w, r, output)
	}
	fmt.Fprintf(w, "Node %s: last upgraded by NodeUpgradeJob %s\n", node.Name, nodetext.Clean(r.Job))
	writeTable(w, []string{"JOB", "FROM", "TO", "RESULT", "TIME", "REASON"},
		[][]string{{nodetext.Clean(r.Job), orDash(nodetext.Clean(r.From)), nodetext.Clean(r.To), nodetext.Clean(r.Result), nodetext.Clean(r.Time), orDash(nodetext.Clean(r.Reason))}})
	return nil
}
