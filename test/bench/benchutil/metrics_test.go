package benchutil

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/ptr"
)

func TestEachSample(t *testing.T) {
	gauge := func(name string, v float64) *dto.Metric {
		return &dto.Metric{Label: []*dto.LabelPair{{Name: ptr.To("name"), Value: ptr.To(name)}}, Gauge: &dto.Gauge{Value: ptr.To(v)}}
	}
	fams := []*dto.MetricFamily{
		{Name: ptr.To("other"), Metric: []*dto.Metric{gauge("x", 1)}},
		{Name: ptr.To("workqueue_depth"), Metric: []*dto.Metric{gauge("a", 2), gauge("b", 3)}},
	}
	got := map[string]float64{}
	if !EachSample(fams, "workqueue_depth", func(l map[string]string, m *dto.Metric) { got[l["name"]] += m.Gauge.GetValue() }) {
		t.Fatal("EachSample did not find workqueue_depth")
	}
	if len(got) != 2 || got["a"] != 2 || got["b"] != 3 {
		t.Errorf("EachSample saw %v, want a=2 b=3", got)
	}
	if EachSample(fams, "missing", func(map[string]string, *dto.Metric) { t.Error("fn called for a missing family") }) {
		t.Error("EachSample found a missing family")
	}
}
