package tunnel

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the tunnel server's Prometheus metrics.
type Metrics struct {
	connects *prometheus.CounterVec
}

// NewMetrics registers the server's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{connects: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeunit_tunnel_connect_requests_total",
		Help: "CONNECT requests by route (agent: through a node's agent; direct: dialled by the server; refused: off the egress policy) and outcome (ok, forbidden, no_agent, unreachable, error).",
	}, []string{"route", "outcome"})}
	if err := reg.Register(m.connects); err != nil {
		return nil, err
	}
	return m, nil
}

// connect counts one CONNECT request.
func (m *Metrics) connect(route RouteKind, err error) {
	if m == nil {
		return
	}
	if route == "" {
		route = RouteRefused
	}
	m.connects.WithLabelValues(string(route), outcome(err)).Inc()
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrOffPolicy):
		return "forbidden"
	case errors.Is(err, ErrNoAgent):
		return "no_agent"
	case errors.Is(err, ErrUnreachable), errors.Is(err, ErrDirectUnreachable):
		return "unreachable"
	default:
		return "error"
	}
}
