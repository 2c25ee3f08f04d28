// Command image is `make image`: it builds the project's multi-platform
// image without docker into bin/image/ and prints the tarball's path, its
// reference, its platforms and its size.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/projectimage"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

func main() {
	out, ref, err := projectimage.Build(context.Background(), filepath.Join(testenv.RepoRoot(), "bin", "image"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	info, err := os.Stat(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	_, platforms, err := imagebuild.ReadOCIIndex(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %v\n  %s, %.1f MB (OCI image layout with an index; load with: ctr -n k8s.io images import %s, or push with skopeo copy --all oci-archive:%s docker://...)\n",
		ref, platforms, out, float64(info.Size())/1e6, out, out)
}
