package main

import (
	"bufio"
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dialogs shared on Redis (dialog.sharing: redis) by the anycast group
// of anycast_e2e_test.go: three nodes on one SO_REUSEPORT address, the
// calls route set (a dialog and a CDR for every call), the registrar's
// Redis settings (dialog.redis left out). Each node writes its records
// in its own SQLite store; the tests read all three stores and find one
// record per call.

// sharedDialogGroup starts redis-server and three nodes sharing their
// dialogs, with dialog.default_timeout timeout and a takeover delay of
// 1 s.
func sharedDialogGroup(t *testing.T, timeout string) (*redisProc, []*testServer, string) {
	t.Helper()
	return sharedDialogGroupWith(t, timeout, "")
}

// sharedDialogGroupWith is sharedDialogGroup with more configuration.
func sharedDialogGroupWith(t *testing.T, timeout, more string) (*redisProc, []*testServer, string) {
	t.Helper()
	needSipp(t)
	rd := startRedisServer(t)
	sipPort := freeSIPPort(t)
	relays := []string{freeUDPAddr(t), freeUDPAddr(t), freeUDPAddr(t)}
	secret := strings.Repeat("6b", 32)
	extra := "routes: calls\ndialog:\n  sharing: redis\n  default_timeout: " + timeout + "\n  takeover_delay: 1s\n" + more
	nodes := make([]*testServer, 3)
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		var peers []string
		for j, r := range relays {
			if j != i {
				peers = append(peers, strconv.Quote(r))
			}
		}
		nodes[i] = startAnycastNodeWith(t, name, sipPort, relays[i], peers, rd.addr(), secret, extra)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := 0.0
		for _, s := range nodes {
			n += s.metrics()["switchboard_anycast_peers"]
		}
		if n == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the nodes did not learn each other's branch prefixes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return rd, nodes, "127.0.0.1:" + strconv.Itoa(sipPort)
}

// calleeHangsUp runs calls sipp calls through the group's address, each
// caller on a socket of its own (so the kernel spreads them over the
// nodes) and one callee on one socket that hangs up each after 1 s, and
// returns the records across the nodes once there are that many (or 5 s
// after the last call), with their number per node.
func calleeHangsUp(t *testing.T, nodes []*testServer, shared string, calls int) ([]map[string]any, map[string]int) {
	t.Helper()
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-d", "1000", "-m", strconv.Itoa(calls))
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 60*time.Second, "-sf", "uac_call_proxy_bye.xml", "-i", "127.0.0.1", "-t", "un", "-max_socket", "100",
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas), "-rsa", shared, "-m", strconv.Itoa(calls), "-r", "5", "-l", strconv.Itoa(calls),
		"127.0.0.1:"+strconv.Itoa(uas))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
	if code := callee.wait(15 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d:\n%s", code, callee.out.String())
	}
	var recs []map[string]any
	byNode := map[string]int{}
	for wait := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs = nil
		for node, l := range cdrs(t, nodes) {
			byNode[node] = len(l)
			recs = append(recs, l...)
		}
		if len(recs) >= calls || time.Now().After(wait) {
			return recs, byNode
		}
	}
}

// oneRecordEach checks that recs hold exactly one record of each of the
// calls, each ended by the callee's BYE.
func oneRecordEach(t *testing.T, recs []map[string]any, calls int, byNode map[string]int) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range recs {
		seen[r["call_id"].(string)]++
		if r["end_reason"] != "bye" || r["ended_by"] != "callee" {
			t.Errorf("record %v", r)
		}
	}
	if len(recs) != calls || len(seen) != calls {
		t.Fatalf("%d records of %d calls across the nodes (%v), want one each: %v", len(recs), len(seen), byNode, seen)
	}
}

// cdrs returns the records of every node: through acc.list on those
// running, from the store offline for those that are not.
func cdrs(t *testing.T, nodes []*testServer) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, n := range nodes {
		var recs []map[string]any
		select {
		case <-n.exited:
			code, js, errs := runCLI(t, "", "cdr", "list", "-o", "json", "-c", n.Config)
			if code != 0 || json.Unmarshal([]byte(js), &recs) != nil {
				t.Fatalf("cdr list on %s: %d %q %q", n.Mgmt, code, js, errs)
			}
		default:
			recs = accListArgs(t, n, `{}`)
		}
		out[n.Mgmt] = recs
	}
	return out
}

// redisCommands reads INFO commandstats: calls per command.
func redisCommands(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		out[name] = n
	}
	return out
}

// TestE2EDialogSharedTakeover: a call set up through one node of three
// with dialog.default_timeout 2s; that node is killed with SIGKILL once
// the call is up and written to Redis. One of the two survivors, which
// never saw the call, ends it at its timeout plus the takeover delay: the
// sipp caller and callee each get its BYE (their scenarios check it and
// answer), and exactly one record of the call exists across the three
// nodes' stores (the dead node's read offline), with reason timeout.
func TestE2EDialogSharedTakeover(t *testing.T) {
	t.Parallel()
	_, nodes, shared := sharedDialogGroup(t, "2s")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_call_proxy_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas), "-rsa", shared, "-m", "1", "127.0.0.1:"+strconv.Itoa(uas))
	}()
	// The node the caller's flow hashed to holds the call.
	var a *testServer
	deadline := time.Now().Add(10 * time.Second)
	for a == nil {
		for _, n := range nodes {
			if m := n.metrics(); m["switchboard_dialog_confirmed"] == 1 && m["switchboard_dialog_redis_writes_total"] >= 1 {
				a = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node holds the call, written to Redis, within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	answered := time.Now()
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
	var survivors []*testServer
	for _, n := range nodes {
		if n != a {
			survivors = append(survivors, n)
		}
	}
	res := <-done
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d (no BYE from a survivor within 10 s?):\n%s", res.Code, res.Output)
	}
	if code := callee.wait(10 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (no BYE?):\n%s", code, callee.out.String())
	}
	took := time.Since(answered)
	t.Logf("the call held by the killed node was ended by a survivor %v after its answer (timeout 2 s, takeover delay 1 s, scans every 1 s)", took.Round(100*time.Millisecond))
	if took < 2*time.Second {
		t.Fatalf("ended %v after the answer, before its timeout", took)
	}
	var takeovers, byes, ended float64
	for _, n := range survivors {
		m := n.metrics()
		takeovers += m["switchboard_dialog_redis_takeovers_total"]
		byes += m["switchboard_dialog_byes_sent_total"]
		ended += m[`switchboard_dialog_ended_total{reason="timeout"}`]
	}
	if takeovers != 1 || byes != 2 || ended != 1 {
		t.Fatalf("survivors: takeovers %v, BYEs sent %v, ended at timeout %v; want 1, 2, 1", takeovers, byes, ended)
	}
	var recs []map[string]any
	for wait := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs = nil
		for _, l := range cdrs(t, nodes) {
			recs = append(recs, l...)
		}
		if len(recs) >= 1 || time.Now().After(wait) {
			break
		}
	}
	time.Sleep(300 * time.Millisecond) // a second record, if any, would be written by now
	recs = nil
	for node, l := range cdrs(t, nodes) {
		for _, r := range l {
			t.Logf("record on %s: %v %v %v", node, r["call_id"], r["end_reason"], r["duration_ms"])
		}
		recs = append(recs, l...)
	}
	if len(recs) != 1 || recs[0]["end_reason"] != "timeout" || recs[0]["ended_by"] != "proxy" || recs[0]["sip_code"] != float64(200) ||
		recs[0]["from_user"] != "caller" {
		t.Fatalf("records across the three nodes: %v", recs)
	}
}

// TestE2EDialogSharedByeElsewhere: ten calls from their own sockets (sipp
// -t un) spread over the three nodes; the sipp callee answers them all on
// one socket and hangs up each after 1 s, and its BYEs land on the node
// its one flow hashes to, which set up only some of the calls. Every
// call ends with the callee's BYE relayed to the caller, exactly one
// record per call across the nodes (reason bye, by the callee), and no
// node is left with a dialog. Logs the Redis commands per call (INFO
// commandstats before and after).
func TestE2EDialogSharedByeElsewhere(t *testing.T) {
	t.Parallel()
	rd, nodes, shared := sharedDialogGroup(t, "1m")
	rc := redis.NewClient(&redis.Options{Addr: rd.addr()})
	defer rc.Close()
	const calls = 10
	before := redisCommands(t, rc)
	start := time.Now()
	recs, byNode := calleeHangsUp(t, nodes, shared, calls)
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	after := redisCommands(t, rc)
	oneRecordEach(t, recs, calls, byNode)
	var found, created float64
	for _, n := range nodes {
		m := n.metrics()
		found += m[`switchboard_dialog_redis_reads_total{result="found"}`]
		created += m[`switchboard_dialog_redis_writes_total`]
	}
	t.Logf("records per node %v; dialogs read from Redis by a node that did not set the call up: %v", byNode, found)
	if found == 0 {
		t.Fatal("no BYE landed on another node than its call's: the kernel did not spread the calls")
	}
	for _, n := range nodes {
		deadline := time.Now().Add(5 * time.Second)
		for {
			m := n.metrics()
			if m["switchboard_dialog_active"] == 0 && m["switchboard_dialog_remote"] == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still holds dialogs: active %v, remote %v", n.Mgmt, m["switchboard_dialog_active"], m["switchboard_dialog_remote"])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Redis commands per call. INFO commandstats counts the commands the
	// scripts run inside Redis too (hget, hset...); the round trips are
	// the commands the nodes send: EVALSHA (a write, a claim), ZADD and
	// ZREM (the deadlines), PUBLISH (an end), HGETALL (a read by a node
	// that did not set the call up). ZRANGEBYSCORE is each node's scan
	// once a second, PING the registrar's idle writer: not the calls'.
	var names []string
	sent, inside := 0, 0
	for name, n := range after {
		d := n - before[name]
		if d == 0 || name == "info" {
			continue
		}
		names = append(names, name+"="+strconv.Itoa(d))
		switch name {
		case "evalsha", "zadd", "zrem", "publish", "hgetall":
			sent += d
		case "zrangebyscore", "ping", "hello", "script|load", "subscribe":
		default:
			inside += d
		}
	}
	sort.Strings(names)
	t.Logf("Redis commands during %d calls over %v: %s", calls, took.Round(time.Second), strings.Join(names, " "))
	t.Logf("per call: %.1f commands sent by the nodes (writes, claims, deadlines, end messages, reads), %.1f run inside the scripts",
		float64(sent)/calls, float64(inside)/calls)
}

// TestE2ETopologyHidingShared: hidden calls (topohiding.calls) through
// the three-node group. The callee's BYE carries no Route, only the token
// in the Request-URI (the proxy's Contact), and its flow reaches one node
// whatever node set the call up: a node without the dialog suspends the
// BYE, reads the dialog from Redis and relays it to the caller
// (topohiding Fetch). Every call gets its BYE at the caller (sipp exits
// 0), one record each across the nodes, and at least one BYE was
// fetched.
func TestE2ETopologyHidingShared(t *testing.T) {
	t.Parallel()
	_, nodes, shared := sharedDialogGroupWith(t, "1m", "topohiding:\n  calls: true\n")
	const calls = 10
	recs, byNode := calleeHangsUp(t, nodes, shared, calls)
	oneRecordEach(t, recs, calls, byNode)
	var hidden, fetched, unmatched float64
	for _, n := range nodes {
		m := n.metrics()
		hidden += m["switchboard_topohiding_calls_total"]
		fetched += m["switchboard_topohiding_fetched_total"]
		unmatched += m["switchboard_topohiding_unmatched_total"]
	}
	t.Logf("calls hidden %v, requests fetched from another node's call %v, unmatched %v", hidden, fetched, unmatched)
	if hidden != calls {
		t.Fatalf("%v calls hidden, want %d", hidden, calls)
	}
	if fetched == 0 {
		t.Fatal("no BYE landed on another node than its call's: the kernel did not spread the calls")
	}
	if unmatched != 0 {
		t.Fatalf("%v requests matched no dialog", unmatched)
	}
}
