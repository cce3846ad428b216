// Package acc writes a record of every call (a CDR) from the dialog
// module's events, OpenSIPS's acc module with do_accounting("db",
// "cdr|failed|missed"): start, answer and end times, duration, From and
// To, the caller's address, the Call-ID, the INVITE's final status, why
// and by whom the call ended, and extra pairs the route chose (SetExtra,
// acc_extra). Answered and failed calls go to the store table acc; failed
// calls to our subscribers that the route marked (MarkMissed) go to
// missed_calls instead. A file sink (CSV or JSON lines, rotated by size)
// may take the same records.
//
// Nothing is written on the receive path: the dialog's end event copies
// what the record needs into a pooled record and queues it (a bounded
// channel, no allocation); one goroutine takes records off the queue in
// batches and writes each batch in one transaction. A full queue drops the
// record, counted and logged with its Call-ID; Stop (SIGTERM) writes what
// is queued before the server exits. See README.md.
package acc

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/store"
)

// Settings are the acc section of the configuration.
type Settings struct {
	// Store writes the records to the store's acc and missed_calls
	// tables.
	Store bool `yaml:"store"`
	// Failed writes records of calls that were never answered (a final
	// response of 300 or above, a CANCEL); OpenSIPS's failed transactions.
	// Missed calls the route marked are written whatever it says.
	Failed bool `yaml:"failed"`
	// File, when set, is a file the records are appended to as well, in
	// Format ("csv" or "json": one JSON object a line), rotated past
	// FileMaxSize into File.1 ... File.<FileKeep>.
	File        string `yaml:"file"`
	Format      string `yaml:"format"`
	FileMaxSize string `yaml:"file_max_size"`
	FileKeep    int    `yaml:"file_keep"`
	// QueueSize bounds the records waiting to be written; BatchSize is
	// the most written in one transaction. BatchWait is how long the
	// first record of a batch waits for others (see run).
	QueueSize int           `yaml:"queue_size"`
	BatchSize int           `yaml:"batch_size"`
	BatchWait time.Duration `yaml:"batch_wait"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{Store: true, Failed: true, Format: "csv", FileMaxSize: "100MiB", FileKeep: 5,
		QueueSize: 16384, BatchSize: 256, BatchWait: 250 * time.Millisecond}
}

// enabled reports whether the settings write records anywhere.
func (s *Settings) enabled() bool { return s.Store || s.File != "" }

func checkSettings(v any) error {
	s := v.(*Settings)
	if _, err := parseSize(s.FileMaxSize); err != nil {
		return modules.Errorf("file_max_size", "%q: %v", s.FileMaxSize, err)
	}
	switch {
	case s.Format != "csv" && s.Format != "json":
		return modules.Errorf("format", "%q: want csv or json", s.Format)
	case s.FileKeep < 0 || s.FileKeep > 1000:
		return modules.Errorf("file_keep", "%d: want 0 to 1000", s.FileKeep)
	case s.QueueSize < 1 || s.QueueSize > 1<<20:
		return modules.Errorf("queue_size", "%d: want 1 to %d", s.QueueSize, 1<<20)
	case s.BatchSize < 1 || s.BatchSize > 10000:
		return modules.Errorf("batch_size", "%d: want 1 to 10000", s.BatchSize)
	case s.BatchWait < 0 || s.BatchWait > 10*time.Second:
		return modules.Errorf("batch_wait", "%s: want 0 to 10s", s.BatchWait)
	case strings.ContainsRune(s.File, 0):
		return modules.Errorf("file", "contains a NUL byte")
	}
	return nil
}

// parseSize reads a size in bytes: "1048576", "100MiB", "64KiB", "1GiB",
// "500MB" (powers of 1000 for kB, MB, GB). At least 4 KiB.
func parseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil:
		return 0, errors.New("want a number of bytes, or one with KiB, MiB, GiB (or kB, MB, GB)")
	case n <= 0 || n > (1<<50)/mult:
		return 0, errors.New("out of range")
	case n*mult < 4096:
		return 0, errors.New("below 4KiB")
	}
	return n * mult, nil
}

func init() {
	modules.Register(modules.Definition{
		Name:     "acc",
		Doc:      "call records (CDRs) of answered, failed and missed calls from the dialogs, to the store and a file (OpenSIPS acc)",
		After:    []string{"dialog"},
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
		CLIName:  "cdr",
		CLI:      cliCommands,
	})
}

// FlagMissed is the dialog flag (dialog.SetFlag) that MarkMissed sets:
// the call, if it fails, is a missed call.
const FlagMissed uint32 = 1 << 31

// Acc is the module instance. Its methods are safe for concurrent use.
type Acc struct {
	h   *modules.Host
	log *slog.Logger
	st  *store.Store
	dlg *dialog.Dialog

	on        bool // subscribed: records are written somewhere
	queueSize int
	batchSize int
	batchWait atomic.Int64 // a time.Duration
	failed    atomic.Bool
	toStore   atomic.Bool
	file      atomic.Pointer[fileSettings] // nil: no file

	// queue holds records to write; sendMu guards its closing: a sender
	// holds it shared, Stop exclusively, so no record is queued after
	// the writer's last look.
	queue  chan *record
	free   chan *record
	sendMu sync.RWMutex
	closed bool
	done   chan struct{}
	halt   chan struct{} // closed by Stop: the writer's wait for a batch ends
	start  sync.Once
	stop   sync.Once

	queued   [2]*metrics.Counter // acc, missed_calls
	full     *metrics.Counter
	late     *metrics.Counter
	written  [2]*metrics.Counter // store, file
	writeErr [2]*metrics.Counter
	batches  *metrics.Counter // batches written: records per transaction is written ÷ batches
	lost     [2]*metrics.Counter
	backlog  [2]atomic.Int64 // records a sink keeps to try again, set by the writer
}

// Sinks, the index of the per-sink counters.
const (
	sinkStore = 0
	sinkFile  = 1
)

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	d, _ := h.Module("dialog").(*dialog.Dialog)
	if d == nil {
		return nil, errors.New("acc: needs the dialog module")
	}
	if s.Store && h.Store == nil {
		return nil, errors.New("acc: store: true needs the store")
	}
	a := &Acc{
		h: h, log: h.Logger(), st: h.Store, dlg: d,
		on: s.enabled(), queueSize: s.QueueSize, batchSize: s.BatchSize,
		queue: make(chan *record, s.QueueSize), free: make(chan *record, s.QueueSize+s.BatchSize),
		done: make(chan struct{}), halt: make(chan struct{}),
	}
	a.apply(s)
	a.registerMetrics(h.Metrics)
	a.registerCommands(h)
	if a.on {
		d.Subscribe(a.onEvent)
	}
	return a, nil
}

// apply takes the settings that may change at run time.
func (a *Acc) apply(s *Settings) {
	a.failed.Store(s.Failed)
	a.toStore.Store(s.Store)
	a.batchWait.Store(int64(s.BatchWait))
	if s.File == "" {
		a.file.Store(nil)
		return
	}
	size, _ := parseSize(s.FileMaxSize) // checked
	a.file.Store(&fileSettings{path: s.File, format: s.Format, maxSize: size, keep: s.FileKeep})
}

// Enabled reports whether the module writes records (acc.store, or
// acc.file): route sets create the dialogs it needs when it does.
func (a *Acc) Enabled() bool { return a != nil && a.on }

// Start starts the writer goroutine.
func (a *Acc) Start() error {
	a.start.Do(func() { go a.run() })
	return nil
}

// Stop stops taking records, writes every record queued and closes the
// file. Records of calls that end after it are dropped (counted in
// switchboard_acc_dropped_total{reason="stopped"}).
func (a *Acc) Stop() {
	a.stop.Do(func() {
		a.sendMu.Lock()
		a.closed = true
		close(a.queue)
		close(a.halt)
		a.sendMu.Unlock()
		a.start.Do(func() { go a.run() }) // never started: write what is queued anyway
		<-a.done
	})
}

// CheckReload names the keys that take effect at the next start
// (keepRestartKeys), and refuses store: true without the store.
func (a *Acc) CheckReload(v any) error {
	s := *v.(*Settings)
	if s.Store && a.st == nil {
		return modules.Errorf("store", "true needs the store")
	}
	return modules.NeedRestart(a.keepRestartKeys(&s)...)
}

// keepRestartKeys writes into s the value in force of each key that
// takes effect only at the next start and that s changes, and returns
// those keys: queue_size and batch_size, and store and file when they
// turn accounting on or off (the queue, the writer and the dialog events
// are set up at start; with accounting on, they move from one sink to
// the other at once).
func (a *Acc) keepRestartKeys(s *Settings) (keys []string) {
	if s.enabled() != a.on {
		store, file := a.toStore.Load(), ""
		if f := a.file.Load(); f != nil {
			file = f.path
		}
		keys = modules.KeepInForce(keys, "store", &s.Store, store)
		keys = modules.KeepInForce(keys, "file", &s.File, file)
	}
	keys = modules.KeepInForce(keys, "queue_size", &s.QueueSize, a.queueSize)
	keys = modules.KeepInForce(keys, "batch_size", &s.BatchSize, a.batchSize)
	return keys
}

// Reload applies changed settings: store, failed, batch_wait and the file
// keys at once (the file is reopened before the next batch); the keys
// that take effect at the next start keep their values in force
// (keepRestartKeys).
func (a *Acc) Reload(v any) error {
	s := v.(*Settings)
	if s.Store && a.st == nil {
		return modules.Errorf("store", "true needs the store")
	}
	a.keepRestartKeys(s)
	a.apply(s)
	return nil
}

func (a *Acc) registerMetrics(set *metrics.Set) {
	for i, table := range []string{"acc", "missed_calls"} {
		a.queued[i] = set.NewCounter(`switchboard_acc_queued_total{table="` + table + `"}`)
	}
	a.full = set.NewCounter(`switchboard_acc_dropped_total{reason="queue_full"}`)
	a.late = set.NewCounter(`switchboard_acc_dropped_total{reason="stopped"}`)
	for i, sink := range []string{"store", "file"} {
		a.written[i] = set.NewCounter(`switchboard_acc_written_total{sink="` + sink + `"}`)
		a.writeErr[i] = set.NewCounter(`switchboard_acc_write_errors_total{sink="` + sink + `"}`)
		a.lost[i] = set.NewCounter(`switchboard_acc_lost_total{sink="` + sink + `"}`)
	}
	a.batches = set.NewCounter("switchboard_acc_batches_total")
	set.NewGauge("switchboard_acc_queue_length", func() float64 { return float64(len(a.queue)) })
	for i, sink := range []string{"store", "file"} {
		set.NewGauge(`switchboard_acc_backlog{sink="`+sink+`"}`, func() float64 { return float64(a.backlog[i].Load()) })
	}
}
