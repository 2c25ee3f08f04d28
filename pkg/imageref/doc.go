// Package imageref validates a NodeUpgradeJob's target version and normalises
// its install image into a fully qualified, tagged reference. Everything that
// ends up in a Pod spec or a keadm argv goes through here first, so the
// accepted character set is deliberately narrow.
package imageref
