package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot writes files (path relative to the root: content) under a
// temporary directory and returns it.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const meminfo16G = "MemTotal:       16777216 kB\nMemFree:         1000000 kB\n"

func TestAvailableMemory(t *testing.T) {
	cases := []struct {
		name   string
		files  map[string]string
		want   int64
		source string
	}{
		{"machine only", map[string]string{"proc/meminfo": meminfo16G}, 16 << 30, "MemTotal"},
		{"cgroup v2 limit below", map[string]string{
			"proc/meminfo":     meminfo16G,
			"proc/self/cgroup": "0::/system.slice/switchboard.service\n",
			"sys/fs/cgroup/system.slice/switchboard.service/memory.max": "2147483648\n",
			"sys/fs/cgroup/system.slice/memory.max":                     "max\n",
		}, 2 << 30, "the cgroup memory limit"},
		{"cgroup v2 parent limit", map[string]string{
			"proc/meminfo":                 meminfo16G,
			"proc/self/cgroup":             "0::/a/b\n",
			"sys/fs/cgroup/a/b/memory.max": "max\n",
			"sys/fs/cgroup/a/memory.max":   "1073741824\n",
		}, 1 << 30, "the cgroup memory limit"},
		{"cgroup v2 unlimited", map[string]string{
			"proc/meminfo":                        meminfo16G,
			"proc/self/cgroup":                    "0::/user.slice\n",
			"sys/fs/cgroup/user.slice/memory.max": "max\n",
		}, 16 << 30, "MemTotal"},
		{"container sees its cgroup as the root", map[string]string{
			"proc/meminfo":             meminfo16G,
			"proc/self/cgroup":         "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/memory.max": "536870912\n",
		}, 512 << 20, "the cgroup memory limit"},
		{"cgroup v1", map[string]string{
			"proc/meminfo":     meminfo16G,
			"proc/self/cgroup": "5:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n",
			"sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes": "4294967296\n",
		}, 4 << 30, "the cgroup memory limit"},
		{"cgroup v1 unlimited", map[string]string{
			"proc/meminfo":     meminfo16G,
			"proc/self/cgroup": "4:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 16 << 30, "MemTotal"},
		{"nothing readable", map[string]string{}, 0, "MemTotal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, source := availableMemory(fakeRoot(t, c.files))
			if got != c.want || source != c.source {
				t.Fatalf("availableMemory = %d (%s), want %d (%s)", got, source, c.want, c.source)
			}
		})
	}
}

func TestTransactionMemory(t *testing.T) {
	if got, src := (Limits{MaxTransactionMemory: 4}).TransactionMemory(); got != 4<<20 || src != "limits.max_transaction_memory" {
		t.Errorf("configured 4 MiB: %d (%s)", got, src)
	}
	if got, src := autoTransactionMemory(16<<30, "MemTotal"); got != 2<<30 || src != "1/8 of MemTotal" {
		t.Errorf("16 GiB machine: %d (%s)", got, src)
	}
	if got, _ := autoTransactionMemory(128<<20, "the cgroup memory limit"); got != 32<<20 {
		t.Errorf("128 MiB cgroup: %d, want the 32 MiB floor", got)
	}
	if got, src := autoTransactionMemory(0, "MemTotal"); got != 256<<20 || !strings.Contains(src, "unknown") {
		t.Errorf("unknown memory: %d (%s)", got, src)
	}
	// On this machine: a share of something real.
	if got, src := (Limits{}).TransactionMemory(); got < 32<<20 || !strings.HasPrefix(src, "1/8 of ") {
		t.Errorf("automatic here: %d (%s)", got, src)
	}
}
