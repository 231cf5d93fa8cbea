package pgstore

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	latency    *prometheus.HistogramVec
	errors     *prometheus.CounterVec
	leasesHeld prometheus.Gauge
	acquired   prometheus.Counter
	takeovers  prometheus.Counter
	fenced     prometheus.Counter
	reconnects *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "syncdb_store_seconds", Help: "PostgreSQL store round trips by operation (append, read, lease, renew, ping).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 3, 10),
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncdb_store_errors_total", Help: "PostgreSQL store operations that failed, by operation.",
		}, []string{"op"}),
		leasesHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncdb_leases_held", Help: "Database writer leases this node holds.",
		}),
		acquired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncdb_lease_acquisitions_total", Help: "Writer leases this node took or confirmed in the store.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncdb_lease_takeovers_total", Help: "Writer leases this node took from another (dead or expired) node.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncdb_fenced_appends_total", Help: "Appends the store refused because another node had taken the lease.",
		}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncdb_store_reconnects_total", Help: "Reconnections of the lock and listen connections.",
		}, []string{"conn"}),
	}
	if reg != nil {
		reg.MustRegister(m.latency, m.errors, m.leasesHeld, m.acquired, m.takeovers, m.fenced, m.reconnects)
	}
	return m
}

func (m *metrics) observe(op string, start time.Time, err error) {
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}
