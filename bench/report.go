package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// report collects samples by key (group/side/measure) and renders them.
type report struct {
	o       *options
	env     *benchEnv
	samples map[string][]float64
	notes   map[string]string
	start   time.Time
	// startLoad is /proc/loadavg and the I/O pressure when the run began:
	// other work on the machine skews the numbers.
	startLoad string
}

// loadNow describes how busy the machine is: the 1-minute load average and
// the share of the last 10 s in which some task waited for I/O.
func loadNow() string {
	s := "load average ?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			s = "load average " + f[0]
		}
	}
	if b, err := os.ReadFile("/proc/pressure/io"); err == nil {
		for _, f := range strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) {
			if v, ok := strings.CutPrefix(f, "avg10="); ok {
				s += ", I/O pressure " + v + "%"
			}
		}
	}
	return s
}

func newReport(o *options, env *benchEnv) *report {
	return &report{o: o, env: env, samples: map[string][]float64{}, notes: map[string]string{}, start: time.Now(), startLoad: loadNow()}
}

func (r *report) add(key string, v float64) { r.samples[key] = append(r.samples[key], v) }

func (r *report) note(group, text string) { r.notes[group] = text }

// summary is the median, min and max of a key's samples.
type summary struct {
	med, lo, hi float64
	n           int
}

func (r *report) summary(key string) (summary, bool) {
	v := slices.Clone(r.samples[key])
	if len(v) == 0 {
		return summary{}, false
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return summary{med: med, lo: v[0], hi: v[len(v)-1], n: len(v)}, true
}

// unit of a key, from its last element.
func unitOf(key string) string {
	last := key[strings.LastIndexByte(key, '/')+1:]
	switch {
	case strings.HasSuffix(last, "per_sec"):
		return "rate"
	case strings.HasSuffix(last, "_us"):
		return "us"
	case last == "bytes" || last == "open_bytes" || strings.Contains(last, "rss") || strings.Contains(last, "hwm"):
		return "bytes"
	case strings.HasSuffix(last, "cpu_util"):
		return "ratio"
	case strings.HasSuffix(last, "requests") || last == "conns":
		return "count"
	default:
		return "time"
	}
}

func fmtVal(unit string, v float64) string {
	switch unit {
	case "rate":
		return fmt.Sprintf("%s/s", thousands(v))
	case "us":
		return fmt.Sprintf("%.1f µs", v)
	case "bytes":
		return mibf(v)
	case "ratio":
		return fmt.Sprintf("%.0f%%", v*100)
	case "count":
		if v == math.Trunc(v) {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	default:
		switch {
		case v >= 1:
			return fmt.Sprintf("%.2f s", v)
		case v >= 0.01:
			return fmt.Sprintf("%.0f ms", v*1e3)
		default:
			return fmt.Sprintf("%.2f ms", v*1e3)
		}
	}
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	if v < 10 {
		s = fmt.Sprintf("%.1f", v)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && c != '.' && !strings.Contains(s[:i], ".") {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func mib(n int64) string { return mibf(float64(n)) }

func mibf(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.0f KiB", v/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", v)
	}
}

// cell is one side of a table row: a key's samples, or a fixed target.
type cell struct {
	label  string
	key    string
	target float64 // when key is ""
}

type row struct {
	num, title, metric string
	a, b               cell
}

// cellText renders a cell; unit is that of the row's other cell (for a
// target).
func (r *report) cellText(c cell, unit string) (string, float64, bool) {
	if c.key == "" {
		if c.target == 0 {
			return "", 0, false
		}
		return fmt.Sprintf("%s: %s", c.label, fmtVal(unit, c.target)), c.target, true
	}
	s, ok := r.summary(c.key)
	if !ok {
		return "", 0, false
	}
	u := unitOf(c.key)
	text := fmt.Sprintf("%s: **%s**", c.label, fmtVal(u, s.med))
	if s.n > 1 {
		text += fmt.Sprintf(" (%s–%s)", strings.TrimSuffix(fmtVal(u, s.lo), unitSuffix(u, s.lo)), fmtVal(u, s.hi))
	}
	return text, s.med, true
}

// unitSuffix is the unit part of a formatted value, dropped from the low
// end of a range when both ends share it.
func unitSuffix(u string, v float64) string {
	f := fmtVal(u, v)
	if i := strings.LastIndexByte(f, ' '); i >= 0 {
		return f[i:]
	}
	return ""
}

func (r *report) rows() []row {
	o := r.o
	big := fmt.Sprintf("%d MiB", o.bigMiB)
	go_, turso, floor := "Go", "Turso", "HTTP download (floor)"
	var rows []row
	add := func(num, title, metric string, a, b cell) { rows = append(rows, row{num, title, metric, a, b}) }
	add("1", "Bootstrap, "+big, "time", cell{go_, "bootstrap/go/seconds", 0}, cell{turso, "bootstrap/turso/seconds", 0})
	add("1", "", "time", cell{go_, "bootstrap/go/seconds", 0}, cell{floor, "bootstrap/floor/seconds", 0})
	add("1", "", "time, first bootstrap of a revision (not cached)", cell{go_, "bootstrap/go_cold/seconds", 0}, cell{floor, "bootstrap/floor/seconds", 0})
	add("1", "", "time, client only (replayed response)", cell{go_, "bootstrap/go_replay/seconds", 0}, cell{floor, "bootstrap/floor/seconds", 0})
	add("1", "", "time, client only (replayed response)", cell{go_, "bootstrap/go_replay/seconds", 0}, cell{turso, "bootstrap/turso_replay/seconds", 0})
	gz := "Go, zstd"
	add("1", "", "time", cell{gz, "bootstrap/go_zstd/seconds", 0}, cell{go_, "bootstrap/go/seconds", 0})
	add("1", "", "time, first bootstrap of a revision (not cached)", cell{gz, "bootstrap/go_zstd_cold/seconds", 0}, cell{go_, "bootstrap/go_cold/seconds", 0})
	add("1", "", "time", cell{gz, "bootstrap/go_zstd/seconds", 0}, cell{floor, "bootstrap/floor/seconds", 0})
	add("1", "", "time", cell{gz, "bootstrap/go_zstd/seconds", 0}, cell{turso, "bootstrap/turso/seconds", 0})
	add("1", "", "peak RSS (process)", cell{go_, "bootstrap/go/maxrss", 0}, cell{turso + " (node)", "bootstrap/turso/maxrss", 0})
	add("1", "", "peak RSS (process)", cell{go_, "bootstrap/go/maxrss", 0}, cell{"target", "", 64 << 20})
	add("1", "", "peak RSS (process)", cell{gz, "bootstrap/go_zstd/maxrss", 0}, cell{"target", "", 64 << 20})
	add("1", "", "bytes received", cell{gz, "bootstrap/go_zstd/bytes", 0}, cell{go_, "bootstrap/go/bytes", 0})
	add("1", "", "client CPU (process)", cell{go_, "bootstrap/go/cpu", 0}, cell{turso, "bootstrap/turso/cpu", 0})
	add("1", "", "client CPU (process)", cell{gz, "bootstrap/go_zstd/cpu", 0}, cell{go_, "bootstrap/go/cpu", 0})
	add("1", "", "server CPU", cell{go_, "bootstrap/go/server_cpu", 0}, cell{turso, "bootstrap/turso/server_cpu", 0})
	add("1", "", "server CPU", cell{"Go, not cached", "bootstrap/go_cold/server_cpu", 0}, cell{go_, "bootstrap/go/server_cpu", 0})
	add("1", "", "server CPU", cell{"Go, zstd, not cached", "bootstrap/go_zstd_cold/server_cpu", 0}, cell{"Go, not cached", "bootstrap/go_cold/server_cpu", 0})
	rows2 := fmt.Sprintf("Incremental pull, %s changed rows", thousands(float64(o.pullRows)))
	add("2", rows2, "time", cell{go_, "pull/go/seconds", 0}, cell{turso, "pull/turso/seconds", 0})
	add("2", "", "bytes received", cell{go_, "pull/go/bytes", 0}, cell{turso, "pull/turso/bytes", 0})
	add("2", "", "peak RSS (process)", cell{go_, "pull/go/maxrss", 0}, cell{turso + " (node)", "pull/turso/maxrss", 0})
	p := thousands(float64(o.pushRows))
	add("3", "Push "+p+" inserts, 1 transaction", "push time", cell{go_, "push1/go/seconds", 0}, cell{turso, "push1/turso/seconds", 0})
	add("3", "", "local inserts (before the push)", cell{go_, "push1/go/local_seconds", 0}, cell{turso, "push1/turso/local_seconds", 0})
	add("3", "", "bytes sent", cell{go_, "push1/go/bytes", 0}, cell{turso, "push1/turso/bytes", 0})
	add("3", fmt.Sprintf("Push %s inserts, %s transactions", p, thousands(float64(o.pushTxs))), "push time", cell{go_, "pushN/go/seconds", 0}, cell{turso, "pushN/turso/seconds", 0})
	add("3", "", "local inserts (before the push)", cell{go_, "pushN/go/local_seconds", 0}, cell{turso, "pushN/turso/local_seconds", 0})
	add("3", "", "bytes sent", cell{go_, "pushN/go/bytes", 0}, cell{turso, "pushN/turso/bytes", 0})
	add("4", fmt.Sprintf("Partial cold start (%d KiB prefix + 1 lookup)", o.prefixKiB), "time", cell{go_, "partial/go/seconds", 0}, cell{turso, "partial/turso/seconds", 0})
	add("4", "", "bytes received", cell{go_, "partial/go/bytes", 0}, cell{turso, "partial/turso/bytes", 0})
	add("4", "", "open (bootstrap) only", cell{go_, "partial/go/open_seconds", 0}, cell{turso, "partial/turso/open_seconds", 0})
	add("4", "", "lookup only", cell{go_, "partial/go/lookup_seconds", 0}, cell{turso, "partial/turso/lookup_seconds", 0})
	add("5", fmt.Sprintf("Local use (%d goroutines reading)", o.goroutines), "point lookups", cell{"facade", "local/facade/lookups_per_sec", 0}, cell{"plain modernc", "local/plain/lookups_per_sec", 0})
	add("5", "", "single-row write txs", cell{"facade", "local/facade/writes_per_sec", 0}, cell{"plain modernc", "local/plain/writes_per_sec", 0})
	add("5", "", "write latency p50", cell{"facade", "local/facade/write_p50_us", 0}, cell{"plain modernc", "local/plain/write_p50_us", 0})
	add("5", "", "write latency p99", cell{"facade", "local/facade/write_p99_us", 0}, cell{"plain modernc", "local/plain/write_p99_us", 0})
	l := fmt.Sprintf("Server load, %d clients", o.clients)
	gc, wc := "Go clients", "protocol-level clients"
	load := func(title, metric, k string) {
		add("6", title, metric, cell{gc, "load/go/" + k, 0}, cell{wc, "load/wire/" + k, 0})
	}
	load(l, "pushes", "pushes_per_sec")
	load("", "pull latency p50", "pull_p50")
	load("", "pull latency p99", "pull_p99")
	load("", "push latency p50", "push_p50")
	load("", "push latency p99", "push_p99")
	load("", "server RSS (peak in window)", "server_rss_max")
	load("", "server CPU per push (+ its pull)", "server_cpu_per_push")
	load("", "server CPU use", "server_cpu_util")
	load("", "client process CPU use (all clients)", "client_cpu_util")
	load("", "client process peak RSS (all clients)", "client_maxrss")
	add("7", "One-row push, 100 stalled readers", "push p99", cell{"100 stalled pulls", "stalled/with/push_p99", 0}, cell{"none", "stalled/none/push_p99", 0})
	add("7", "", "push p50", cell{"100 stalled pulls", "stalled/with/push_p50", 0}, cell{"none", "stalled/none/push_p50", 0})
	for _, p := range o.links {
		rows = append(rows, linkRows(o, p)...)
	}
	return rows
}

func (r *report) markdown() string {
	var b strings.Builder
	m := r.env.machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s RAM, Linux %s; %s, node %s, @tursodatabase/sync 0.7.2.\n\n", m.CPU, m.Cores, m.RAM, m.Kernel, m.Go, m.Node)
	fmt.Fprintf(&b, "Machine load: at start %s; at end %s (the end includes this run's own load test).\n\n", r.startLoad, loadNow())
	fmt.Fprintf(&b, "Command: `go run ./bench%s` (%d repetition(s) of each side, alternating A B A B; %s in all).\n\n",
		argString(), r.o.reps, time.Since(r.start).Round(time.Second))
	b.WriteString("| # | benchmark | metric | A: median (min–max) | B: median (min–max) | A/B |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	lastNum := ""
	for _, row := range r.rows() {
		a, av, ok := r.cellText(row.a, "")
		if !ok {
			continue
		}
		bt, bv, hasB := r.cellText(row.b, unitOf(row.a.key))
		ratio := "–"
		if hasB && bv != 0 {
			ratio = fmt.Sprintf("%.2f", av/bv)
		} else {
			bt = "–"
		}
		num := row.num
		if num == lastNum {
			num = ""
		}
		lastNum = row.num
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", num, row.title, row.metric, a, bt, ratio)
	}
	b.WriteString("\n")
	var groups []string
	for g := range r.notes {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		fmt.Fprintf(&b, "- %s: %s\n", g, r.notes[g])
	}
	b.WriteString("\n<details><summary>Every measured key (median, min–max, n)</summary>\n\n| key | median | min–max | n |\n|---|---|---|---|\n")
	var keys []string
	for k := range r.samples {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s, _ := r.summary(k)
		u := unitOf(k)
		fmt.Fprintf(&b, "| %s | %s | %s – %s | %d |\n", k, fmtVal(u, s.med), fmtVal(u, s.lo), fmtVal(u, s.hi), s.n)
	}
	b.WriteString("\n</details>\n")
	return b.String()
}

func argString() string {
	var s strings.Builder
	for _, a := range os.Args[1:] {
		s.WriteString(" ")
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		s.WriteString(a)
	}
	return s.String()
}

func (r *report) writeJSON(path string) error {
	clean := map[string][]float64{}
	for k, v := range r.samples {
		c := make([]float64, len(v))
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				x = 0
			}
			c[i] = x
		}
		clean[k] = c
	}
	b, err := json.MarshalIndent(map[string]any{
		"machine": r.env.machine, "command": "go run ./bench" + argString(), "reps": r.o.reps,
		"samples": clean, "notes": r.notes, "seconds": time.Since(r.start).Seconds(),
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
