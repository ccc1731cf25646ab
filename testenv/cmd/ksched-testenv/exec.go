package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// execCmd runs one program (e.g. kube-scheduler) as a babysat child: its output goes to --log,
// it dies with the supervisor (Pdeathsig), and it is stopped (SIGTERM, then SIGKILL after
// --stop-timeout) on SIGINT/SIGTERM or, with --watch-stdin, when stdin reaches EOF or the parent
// dies. Exits with the child's exit code (1 if it was stopped by a signal).
//
//	ksched-testenv exec --log FILE [--watch-stdin] -- PROGRAM ARGS...
func execCmd(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	logPath := fs.String("log", "", "file receiving the program's stdout and stderr (required)")
	watchStdin := fs.Bool("watch-stdin", false, "stop the program when stdin reaches EOF or the parent process dies")
	stopTimeout := fs.Duration("stop-timeout", 10*time.Second, "how long to wait after SIGTERM before SIGKILL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *logPath == "" || fs.NArg() == 0 {
		logf("exec: usage: ksched-testenv exec --log FILE [--watch-stdin] -- PROGRAM ARGS...")
		return 2
	}
	name := fs.Arg(0)
	p, err := startProc(name, fs.Arg(0), fs.Args()[1:], *logPath)
	if err != nil {
		logf("error: %v", err)
		return 1
	}
	stop := make(chan string, 4)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		stop <- fmt.Sprintf("received %v", s)
		<-sigs
		close(forceKill)
	}()
	if *watchStdin {
		ppid := os.Getppid()
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- "stdin reached EOF"
		}()
		go func() {
			for range time.Tick(time.Second) {
				if os.Getppid() != ppid {
					stop <- "parent process exited"
					return
				}
			}
		}()
	}
	select {
	case why := <-stop:
		logf("stopping %s: %s", name, why)
		p.stop(*stopTimeout)
		return 0
	case <-p.done:
		var ee *exec.ExitError
		if errors.As(p.waitErr, &ee) && ee.ExitCode() >= 0 {
			logf("%s exited (%s)\n%s", name, p.exitDescription(), p.tail(30))
			return ee.ExitCode()
		}
		if p.waitErr != nil {
			logf("%s exited (%s)\n%s", name, p.exitDescription(), p.tail(30))
			return 1
		}
		return 0
	}
}
