package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is one child process (etcd or kube-apiserver) whose output goes to a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// startProc starts bin with args, stdout+stderr appended to logPath. The child gets its own
// process group (a terminal Ctrl-C reaches only the supervisor, which stops children in order)
// and SIGKILL as parent-death signal, so it cannot outlive a killed supervisor.
func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s binary: %w (run testenv/build.sh or pass --bin-dir)", name, err)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "### ksched-testenv: %s %s\n", bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitDescription describes how the process ended; only valid after done is closed.
func (p *proc) exitDescription() string {
	if p.waitErr == nil {
		return "exited with status 0"
	}
	return p.waitErr.Error()
}

// stop sends SIGTERM, waits up to timeout, then SIGKILLs and waits.
func (p *proc) stop(timeout time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-forceKill:
	case <-time.After(timeout):
		logf("%s did not exit %s after SIGTERM; sending SIGKILL", p.name, timeout)
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n lines of the process log.
func (p *proc) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	data = bytes.TrimRight(data, "\n")
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// startError is a component start-up failure, carrying the tail of its log.
type startError struct {
	component string
	msg       string
	logPath   string
	tail      string
	portInUse bool
}

func (e *startError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed to start: %s", e.component, e.msg)
	if e.logPath != "" {
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s\n--- end of %s log ---", e.logPath, e.tail, e.component)
	}
	return b.String()
}

func isPortInUse(err error) bool {
	var se *startError
	return errors.As(err, &se) && se.portInUse
}

func procFailure(p *proc, msg string) *startError {
	tail := p.tail(30)
	return &startError{
		component: p.name,
		msg:       msg,
		logPath:   p.logPath,
		tail:      tail,
		portInUse: strings.Contains(tail, "address already in use"),
	}
}
