package benchutil

import (
	dto "github.com/prometheus/client_model/go"
)

// EachSample calls fn for each sample of the named family among fams (as
// prometheus.Gatherer.Gather returns them, controller-runtime's
// metrics.Registry for one), with the sample's labels by name, and reports
// whether the family is there.
func EachSample(fams []*dto.MetricFamily, family string, fn func(labels map[string]string, m *dto.Metric)) bool {
	for _, f := range fams {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fn(labels, m)
		}
		return true
	}
	return false
}
