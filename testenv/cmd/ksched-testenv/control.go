package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// restartRequest asks the supervisor to restart kube-apiserver in place: same port, same
// certificates, same etcd (so the same data), same flags.
//
// It arrives as a line on stdin (with --watch-stdin; this is how the Rust harness asks)
//
//	restart-apiserver [kill] [grace=DURATION] [down=DURATION]
//
// or as SIGUSR1 (graceful, no down time; handy with up.sh). "kill" sends SIGKILL instead of
// SIGTERM (a crash: no graceful shutdown, open watches and requests are cut); "grace=3s" sends
// SIGKILL that long after SIGTERM (default --stop-timeout); "down=2s" keeps the port closed that
// long before starting again.
//
// On SIGTERM kube-apiserver stops listening at once and answers requests on open connections
// with 503 while it drains, but it keeps open watches until its HTTP server's shutdown timeout
// (60 s): with any watcher connected, a graceful stop lasts the whole grace period and ends with
// SIGKILL. When kube-apiserver is ready again the
// supervisor rewrites DIR/ready and prints the "KSCHED_TESTENV_READY <json>" line again, with
// the new PID and apiserver_restarts incremented. If it cannot be started again, the supervisor
// stops everything and exits 1.
type restartRequest struct {
	kill   bool
	grace  time.Duration // 0: --stop-timeout
	down   time.Duration
	source string
}

func (r restartRequest) String() string {
	how := "SIGTERM"
	if r.kill {
		how = "SIGKILL"
	} else if r.grace > 0 {
		how += fmt.Sprintf(", SIGKILL after %s", r.grace)
	}
	if r.down > 0 {
		how += fmt.Sprintf(", down for %s", r.down)
	}
	return fmt.Sprintf("%s (%s)", how, r.source)
}

// parseControl parses one control line.
func parseControl(line string) (restartRequest, error) {
	fields := strings.Fields(line)
	req := restartRequest{source: "stdin"}
	if len(fields) == 0 || fields[0] != "restart-apiserver" {
		return req, fmt.Errorf("unknown command %q (known: restart-apiserver [kill] [grace=DURATION] [down=DURATION])", line)
	}
	for _, f := range fields[1:] {
		switch {
		case f == "kill":
			req.kill = true
		case strings.HasPrefix(f, "down="):
			d, err := time.ParseDuration(strings.TrimPrefix(f, "down="))
			if err != nil || d < 0 {
				return req, fmt.Errorf("bad down time in %q: want e.g. down=2s", line)
			}
			req.down = d
		case strings.HasPrefix(f, "grace="):
			d, err := time.ParseDuration(strings.TrimPrefix(f, "grace="))
			if err != nil || d <= 0 {
				return req, fmt.Errorf("bad grace period in %q: want e.g. grace=3s", line)
			}
			req.grace = d
		default:
			return req, fmt.Errorf("unknown restart-apiserver option %q in %q", f, line)
		}
	}
	return req, nil
}

// readControl reads control lines from r until EOF, sending restart requests to control; then
// calls onEOF. Unknown lines are logged and ignored.
func readControl(r io.Reader, control chan<- restartRequest, onEOF func()) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		req, err := parseControl(line)
		if err != nil {
			logf("ignoring control line: %v", err)
			continue
		}
		control <- req
	}
	onEOF()
}

// restartAPIServer stops kube-apiserver (SIGTERM and wait, or SIGKILL), optionally waits, and
// starts it again on the same port with the same arguments, waiting for /readyz. Called from
// the main goroutine (Pdeathsig is tied to the thread that forks).
func (e *env) restartAPIServer(ctx context.Context, req restartRequest) error {
	start := time.Now()
	old := e.apiserver
	logf("restarting kube-apiserver (pid %d): %s", old.pid(), req)
	if req.kill {
		_ = old.cmd.Process.Kill()
		<-old.done
	} else if req.grace > 0 {
		old.stop(req.grace)
	} else {
		old.stop(e.o.stopTimeout)
	}
	e.apiserver = nil
	logf("kube-apiserver (pid %d) stopped after %.1fs (%s)", old.pid(), time.Since(start).Seconds(), old.exitDescription())
	if req.down > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("restart aborted: %v", context.Cause(ctx))
		case <-time.After(req.down):
		}
	}
	port := e.apiPort
	var err error
	// The port was just released; a socket still closing can hold it for a moment.
	for attempt := 1; ; attempt++ {
		err = e.startAPIServer(ctx, port)
		if err == nil || !isPortInUse(err) || attempt == 20 || ctx.Err() != nil {
			break
		}
		if e.apiserver != nil {
			e.apiserver.stop(e.o.stopTimeout)
			e.apiserver = nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	e.restarts++
	logf("kube-apiserver restarted in %.1fs (pid %d, restart %d)", time.Since(start).Seconds(), e.apiserver.pid(), e.restarts)
	return nil
}

// announceReady writes DIR/ready and prints the ready line.
func (e *env) announceReady(info *readyInfo) error {
	info.APIServerPID = e.apiserver.pid()
	info.APIServerRestarts = e.restarts
	js, _ := json.Marshal(info)
	if err := writeAtomic(e.path("ready"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing ready file: %w", err)
	}
	fmt.Fprintf(os.Stdout, "%s%s\n", readyPrefix, js)
	return nil
}
