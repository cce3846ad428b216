package config

import (
	"bufio"
	"os"
	"path"
	"strconv"
	"strings"
)

// The default cap on transaction memory (limits.max_transaction_memory: 0)
// is a share of the memory this process may use: an eighth of the smaller
// of the machine's memory and its cgroup's limit, and at least
// minTransactionMemory. An eighth, because the Go heap may grow to twice
// the live data before a collection and the registrar, the credential
// cache and the connections need their part too. When neither figure can
// be read, fallbackTransactionMemory.
const (
	transactionMemoryShare    = 8
	minTransactionMemory      = 32 << 20
	fallbackTransactionMemory = 256 << 20
)

// TransactionMemory returns the cap on the memory of the transaction
// table in bytes, and where it comes from: the configured size, or the
// share of the available memory described above.
func (l Limits) TransactionMemory() (bytes int64, source string) {
	if l.MaxTransactionMemory > 0 {
		return int64(l.MaxTransactionMemory) << 20, "limits.max_transaction_memory"
	}
	return autoTransactionMemory(availableMemory("/"))
}

func autoTransactionMemory(avail int64, source string) (int64, string) {
	if avail <= 0 {
		return fallbackTransactionMemory, "fixed default (available memory unknown)"
	}
	return max(avail/transactionMemoryShare, minTransactionMemory),
		"1/" + strconv.Itoa(transactionMemoryShare) + " of " + source
}

// availableMemory returns the memory this process may use, under root
// (the file system root; tests pass a prepared tree): MemTotal from
// /proc/meminfo, lowered by the memory limit of the process's cgroup or
// of any cgroup above it (v2 memory.max, v1 memory.limit_in_bytes). It
// returns 0 when nothing could be read.
func availableMemory(root string) (bytes int64, source string) {
	bytes, source = memTotal(path.Join(root, "proc/meminfo")), "MemTotal"
	if limit := cgroupLimit(root); limit > 0 && (bytes == 0 || limit < bytes) {
		bytes, source = limit, "the cgroup memory limit"
	}
	return bytes, source
}

func memTotal(file string) int64 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "MemTotal:       16314208 kB"
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// cgroupLimit returns the lowest memory limit on the way from the
// process's cgroup to the root of its hierarchy, 0 when there is none.
func cgroupLimit(root string) int64 {
	data, err := os.ReadFile(path.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0
	}
	var lowest int64
	lower := func(file string) {
		b, err := os.ReadFile(file)
		if err != nil {
			return
		}
		// "max" (v2) and v1's near-2^63 "unlimited" parse as no limit.
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && v > 0 && v < 1<<60 && (lowest == 0 || v < lowest) {
			lowest = v
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		// "0::/system.slice/x.service" (v2), "4:memory:/docker/abc" (v1).
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir, file = path.Join(root, "sys/fs/cgroup"), "memory.max"
		case hasController(parts[1], "memory"):
			dir, file = path.Join(root, "sys/fs/cgroup/memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		// Inside a container the cgroup path may not exist under the
		// mount (the container sees its own cgroup as the root): the
		// walk up reaches the mount's own file then.
		for p := path.Clean("/" + parts[2]); ; p = path.Dir(p) {
			lower(path.Join(dir, p, file))
			if p == "/" {
				break
			}
		}
	}
	return lowest
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}
