package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/jobinput"
	"github.com/nodeupgrade/nodeupgrade/pkg/registrydigest"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// DigestResolver reads what a registry serves for an image tag
// (registrydigest.Resolver; a test's own).
type DigestResolver interface {
	Resolve(ctx context.Context, ref string) (registrydigest.Digests, error)
}

// digestRetry is how soon a job whose registry did not answer asks again.
// The job holds its nodes meanwhile: a registry that is down for a while is
// normal, and no node has started.
const digestRetry = 30 * time.Second

// Event reasons of the digest lookup.
const (
	ReasonDigestsRead    = "DigestsRead"
	ReasonDigestsNotRead = "DigestsNotRead"
)

// errNoResolver is a job's reason when the controller was built without
// registry access (a test's Reconciler).
var errNoResolver = errors.New("this controller reads no registry")

// digestTry is a job's last refused lookup.
type digestTry struct {
	at  time.Time
	why string
}

// resolveDigests reads the install image's digests for a job held on them
// (spec.imageDigestGatter.registryAPI, rollout.Config.DigestsUnresolved).
// Once read, they go into the input's status, so the plan's status write
// records them, under the same resourceVersion precondition as every plan,
// before any node is dispatched with them; from then on the job uses the
// recorded digests whatever the tag names later. When the registry does
// not answer, the job stays held, says why, and asks again after
// digestRetry.
func (r *Reconciler) resolveDigests(ctx context.Context, job *v1alpha1.NodeUpgradeJob, in *rollout.Input) (retry time.Duration) {
	if in.Config.DigestsUnresolved == "" {
		return 0
	}
	log := klog.FromContext(ctx)
	now := r.clock.Now()
	if v, ok := r.digestTries.Load(job.UID); ok {
		// Asked a moment ago and refused: node events must not turn into a
		// stream of registry requests.
		last := v.(digestTry)
		if wait := last.at.Add(digestRetry).Sub(now); wait > 0 {
			in.Config.DigestsUnresolved = last.why
			return wait
		}
	}
	lookup, err := jobinput.DigestLookup(job, r.policy())
	if err == nil && r.digests == nil {
		err = errNoResolver
	}
	var got registrydigest.Digests
	if err == nil {
		got, err = r.digests.Resolve(ctx, lookup)
	}
	if err != nil {
		in.Config.DigestsUnresolved = "waiting for the install image's digests: " + err.Error()
		r.digestTries.Store(job.UID, digestTry{at: now, why: in.Config.DigestsUnresolved})
		log.V(2).Info("Install image's digests not read, retrying", "image", lookup, "err", err, "retryAfter", digestRetry)
		r.recordEvents(job, []rollout.Event{{Warning: true, Reason: ReasonDigestsNotRead,
			Message: fmt.Sprintf("Reading the install image's digests from %s: %v; retrying in %s", lookup, err, digestRetry)}})
		return digestRetry
	}
	r.digestTries.Delete(job.UID)
	resolved := &v1alpha1.ResolvedImageDigests{Image: lookup, Tag: got.Tag, AMD64: got.ByArch["amd64"], ARM64: got.ByArch["arm64"],
		Time: metav1.NewTime(r.clock.Now().UTC().Truncate(time.Second))}
	in.Status.ResolvedImageDigests = resolved
	in.Config.DigestsUnresolved = ""
	in.Config.ApplyResolvedDigests(resolved)
	log.V(2).Info("Install image's digests read", "image", lookup, "tag", got.Tag, "amd64", resolved.AMD64, "arm64", resolved.ARM64)
	r.recordEvents(job, []rollout.Event{{Reason: ReasonDigestsRead, Message: fmt.Sprintf(
		"Read the install image's digests from %s: tag %s, amd64 %s, arm64 %s", lookup, got.Tag, orNone(resolved.AMD64), orNone(resolved.ARM64))}})
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
