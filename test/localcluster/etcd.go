package localcluster

// EtcdMetricsURL is etcd's own Prometheus endpoint (/metrics on its client
// URL, plain HTTP as envtest starts it); empty before the control plane is up.
func (c *Cluster) EtcdMetricsURL() string {
	if cp := c.env.ControlPlane; cp.Etcd != nil && cp.Etcd.URL != nil {
		u := *cp.Etcd.URL
		u.Path = "/metrics"
		return u.String()
	}
	return ""
}
