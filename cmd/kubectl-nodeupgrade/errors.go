package main

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// apiError turns an API error into one line that names what was refused:
// "nodeupgradejob x not found", or "forbidden: cannot patch nodeupgradejob x
// (User "u" cannot patch resource ...)". verb and what describe the request
// as a user would ("get", "nodeupgradejob x").
func apiError(err error, verb, what string) error {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	message := err.Error()
	if errors.As(err, &status) && status.Status().Message != "" {
		message = status.Status().Message
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s not found", what)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("forbidden: cannot %s %s (%s)", verb, what, message)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("unauthorized: cannot %s %s: check your kubeconfig's credentials (%s)", verb, what, message)
	}
	return fmt.Errorf("cannot %s %s: %w", verb, what, err)
}

// jobRef is how messages name a job.
func jobRef(name string) string { return "nodeupgradejob " + name }
