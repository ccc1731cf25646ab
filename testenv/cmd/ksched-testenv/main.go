// Command ksched-testenv runs a real Kubernetes control plane (etcd + kube-apiserver, both built
// from Go modules by testenv/build.sh) on free loopback ports for ksched's tests and for manual
// work with kubectl.
//
//	ksched-testenv up [--dir DIR] [--bin-dir DIR] [--no-api-limits] [--watch-stdin] ...
//	ksched-testenv exec --log FILE [--watch-stdin] -- PROGRAM ARGS...
//
// "up" picks free ports, starts etcd, generates certificates, starts kube-apiserver, waits for
// /readyz, writes DIR/kubeconfig and DIR/ready, prints one line
// "KSCHED_TESTENV_READY <json>" on stdout and blocks. It stops everything on SIGINT/SIGTERM, when a
// component dies, and (with --watch-stdin) when its stdin reaches EOF or its parent process dies.
// It restarts kube-apiserver in place on SIGUSR1 or a "restart-apiserver" line on stdin (see
// control.go) and then prints the ready line again.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const readyPrefix = "KSCHED_TESTENV_READY "

// forceKill is closed on a second SIGINT/SIGTERM: stop then SIGKILLs without waiting.
var forceKill = make(chan struct{})

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ksched-testenv: "+format+"\n", args...)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type upOptions struct {
	dir           string
	binDir        string
	noAPILimits   bool
	keepDir       bool
	watchStdin    bool
	readyTimeout  time.Duration
	stopTimeout   time.Duration
	apiserverPort int
	etcdPort      int
	portAttempts  int
	apiserverArgs stringList
	etcdArgs      stringList
}

// readyInfo is written to DIR/ready and printed after the ready prefix.
type readyInfo struct {
	Kubeconfig     string  `json:"kubeconfig"`
	APIServerURL   string  `json:"apiserver_url"`
	EtcdURL        string  `json:"etcd_url"`
	Dir            string  `json:"dir"`
	CAFile         string  `json:"ca_file"`
	ClientCertFile string  `json:"client_cert_file"`
	ClientKeyFile  string  `json:"client_key_file"`
	SupervisorPID  int     `json:"supervisor_pid"`
	EtcdPID        int     `json:"etcd_pid"`
	APIServerPID   int     `json:"apiserver_pid"`
	EtcdLog        string  `json:"etcd_log"`
	APIServerLog   string  `json:"apiserver_log"`
	BinDir         string  `json:"bin_dir"`
	StartupSeconds float64 `json:"startup_seconds"`
	// How many times kube-apiserver was restarted in place (restart-apiserver / SIGUSR1).
	APIServerRestarts int `json:"apiserver_restarts"`
}

func main() {
	// Children get Pdeathsig, which fires when the *thread* that forked them exits: start them
	// all from the main goroutine, locked to the main thread, which lives as long as the process.
	runtime.LockOSThread()
	// Our stdout/stderr are pipes read by the test process; once it has exited, writing a log
	// line must not kill us (Go exits on SIGPIPE for fds 1 and 2 unless SIGPIPE is notified),
	// or the graceful teardown would be skipped.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "up":
		os.Exit(up(os.Args[2:]))
	case "exec":
		os.Exit(execCmd(os.Args[2:]))
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  ksched-testenv up [flags]                     start etcd + kube-apiserver (up -h for flags)
  ksched-testenv exec --log FILE [--watch-stdin] -- PROGRAM ARGS...
                                                run PROGRAM (e.g. kube-scheduler) as a babysat child`)
}

func up(args []string) int {
	var o upOptions
	exe, _ := os.Executable()
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "working directory for certificates, etcd data, logs, kubeconfig (default: a new temp dir)")
	fs.StringVar(&o.binDir, "bin-dir", filepath.Dir(exe), "directory holding etcd and kube-apiserver")
	fs.BoolVar(&o.noAPILimits, "no-api-limits", false, "disable API priority-and-fairness and in-flight limits (benchmarks)")
	fs.BoolVar(&o.keepDir, "keep-dir", false, "keep DIR (data, logs, certificates) after stopping")
	fs.BoolVar(&o.watchStdin, "watch-stdin", false, "stop when stdin reaches EOF or the parent process dies (for test harnesses)")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 120*time.Second, "how long to wait for each component to become ready")
	fs.DurationVar(&o.stopTimeout, "stop-timeout", 15*time.Second, "how long to wait after SIGTERM before SIGKILL")
	fs.IntVar(&o.apiserverPort, "apiserver-port", 0, "kube-apiserver secure port for the first attempt (0: pick a free one)")
	fs.IntVar(&o.etcdPort, "etcd-port", 0, "etcd client port for the first attempt (0: pick a free one)")
	fs.IntVar(&o.portAttempts, "port-attempts", 3, "how many times to retry on fresh ports when a port is taken")
	fs.Var(&o.apiserverArgs, "apiserver-arg", "extra kube-apiserver flag (repeatable), e.g. --apiserver-arg=--v=2")
	fs.Var(&o.etcdArgs, "etcd-arg", "extra etcd flag (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		logf("unexpected arguments: %v", fs.Args())
		return 2
	}
	if o.portAttempts < 1 {
		o.portAttempts = 1
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("received %v", s))
		s = <-sigs
		logf("second signal (%v): killing everything now", s)
		close(forceKill)
	}()
	control := make(chan restartRequest, 4)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			control <- restartRequest{source: "SIGUSR1"}
		}
	}()
	if o.watchStdin {
		ppid := os.Getppid()
		go readControl(os.Stdin, control, func() { cancel(errors.New("stdin reached EOF")) })
		go func() {
			for range time.Tick(time.Second) {
				if os.Getppid() != ppid {
					cancel(errors.New("parent process exited"))
					return
				}
			}
		}()
	}

	env, err := newEnv(&o)
	if err != nil {
		logf("error: %v", err)
		return 1
	}
	env.control = control
	code := env.run(ctx)
	env.cleanup()
	return code
}

// env is one control plane instance.
type env struct {
	o         *upOptions
	dir       string
	ownDir    bool // dir was created by us (temp dir)
	pki       *pki
	etcd      *proc
	apiserver *proc
	etcdURL   string
	apiURL    string
	apiPort   int
	control   <-chan restartRequest // in-place kube-apiserver restarts
	restarts  int
}

var ownedEntries = []string{"etcd", "pki", "logs", "kubeconfig", "ready", "kube-scheduler", pidFile}

const (
	tempDirPrefix = "ksched-testenv-"
	pidFile       = "supervisor.pid"
)

// collectGarbage removes temporary directories of supervisors that were killed (SIGKILL leaves
// no chance to clean up): TMPDIR/ksched-testenv-*/supervisor.pid naming a dead process.
func collectGarbage() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempDirPrefix+"*", pidFile))
	for _, f := range dirs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), "ksched-testenv") {
			continue // still running
		}
		dir := filepath.Dir(f)
		if err := os.RemoveAll(dir); err == nil {
			logf("removed %s left by a killed supervisor (pid %d)", dir, pid)
		}
	}
}

func newEnv(o *upOptions) (*env, error) {
	e := &env{o: o}
	bin, err := filepath.Abs(o.binDir)
	if err != nil {
		return nil, err
	}
	o.binDir = bin
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s binary not found in %s (build it with testenv/build.sh): %w", b, bin, err)
		}
	}
	if o.dir == "" {
		collectGarbage()
		d, err := os.MkdirTemp("", tempDirPrefix)
		if err != nil {
			return nil, err
		}
		e.dir, e.ownDir = d, true
	} else {
		d, err := filepath.Abs(o.dir)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		e.dir = d
		// Clear leftovers of a previous (killed) run in the same directory.
		for _, name := range ownedEntries {
			if err := os.RemoveAll(filepath.Join(d, name)); err != nil {
				return nil, err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(e.dir, pidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(e.dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) path(name ...string) string { return filepath.Join(append([]string{e.dir}, name...)...) }

func (e *env) run(ctx context.Context) int {
	start := time.Now()
	p, err := generatePKI(e.path("pki"))
	if err != nil {
		logf("error: generating certificates: %v", err)
		return 1
	}
	e.pki = p

	if err := e.startAll(ctx); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			logf("aborted during start-up: %v", cause)
		} else {
			logf("error: %v", err)
		}
		e.stopAll()
		return 1
	}
	info := readyInfo{
		Kubeconfig:     e.path("kubeconfig"),
		APIServerURL:   e.apiURL,
		EtcdURL:        e.etcdURL,
		Dir:            e.dir,
		CAFile:         e.pki.CACert,
		ClientCertFile: e.pki.AdminCert,
		ClientKeyFile:  e.pki.AdminKey,
		SupervisorPID:  os.Getpid(),
		EtcdPID:        e.etcd.pid(),
		APIServerPID:   e.apiserver.pid(),
		EtcdLog:        e.etcd.logPath,
		APIServerLog:   e.apiserver.logPath,
		BinDir:         e.o.binDir,
		StartupSeconds: time.Since(start).Seconds(),
	}
	if err := e.writeKubeconfig(info.Kubeconfig); err != nil {
		logf("error: writing kubeconfig: %v", err)
		e.stopAll()
		return 1
	}
	if err := e.announceReady(&info); err != nil {
		logf("error: %v", err)
		e.stopAll()
		return 1
	}
	logf("control plane ready in %.1fs: kube-apiserver %s (pid %d), etcd %s (pid %d)",
		info.StartupSeconds, e.apiURL, info.APIServerPID, e.etcdURL, info.EtcdPID)
	logf("export KUBECONFIG=%s", info.Kubeconfig)

	code := -1
	for code < 0 {
		select {
		case <-ctx.Done():
			logf("stopping: %v", context.Cause(ctx))
			code = 0
		case <-e.etcd.done:
			logf("error: etcd died unexpectedly (%s)\n%s", e.etcd.exitDescription(), e.etcd.tail(30))
			code = 1
		case <-e.apiserver.done:
			logf("error: kube-apiserver died unexpectedly (%s)\n%s", e.apiserver.exitDescription(), e.apiserver.tail(30))
			code = 1
		case req := <-e.control:
			if err := e.restartAPIServer(ctx, req); err != nil {
				if ctx.Err() != nil {
					logf("stopping: %v", context.Cause(ctx))
					code = 0
				} else {
					logf("error: restarting kube-apiserver: %v", err)
					code = 1
				}
			} else if err := e.announceReady(&info); err != nil {
				logf("error: %v", err)
				code = 1
			}
		}
	}
	_ = os.Remove(e.path("ready"))
	e.stopAll()
	logf("stopped")
	return code
}

// startAll starts etcd and kube-apiserver, retrying on fresh ports when a port is taken.
func (e *env) startAll(ctx context.Context) error {
	var lastErr error
	for attempt := 1; attempt <= e.o.portAttempts; attempt++ {
		if attempt > 1 {
			logf("attempt %d/%d on fresh ports after: %v", attempt, e.o.portAttempts, firstLine(lastErr))
		}
		etcdWant, apiWant := 0, 0
		if attempt == 1 {
			etcdWant, apiWant = e.o.etcdPort, e.o.apiserverPort
		}
		ports, err := pickPorts([]int{etcdWant, 0, apiWant}, []string{"etcd", "etcd peer", "kube-apiserver"})
		if err != nil {
			lastErr = err
			if isPortInUse(err) {
				continue
			}
			return err
		}
		if err := e.startEtcd(ctx, ports[0], ports[1]); err != nil {
			lastErr = err
			e.stopAll()
			if isPortInUse(err) && ctx.Err() == nil {
				continue
			}
			return err
		}
		if err := e.startAPIServer(ctx, ports[2]); err != nil {
			lastErr = err
			e.stopAll()
			if isPortInUse(err) && ctx.Err() == nil {
				continue
			}
			return err
		}
		return nil
	}
	return fmt.Errorf("giving up after %d attempts: %w", e.o.portAttempts, lastErr)
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// pickPorts returns one loopback port per entry: the wanted port if non-zero and free,
// otherwise a free one chosen by the kernel. All listeners are held until every port is chosen
// so the ports are distinct.
func pickPorts(want []int, names []string) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, len(want))
	for i, w := range want {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(w)))
		if err != nil {
			return nil, &startError{component: names[i], msg: fmt.Sprintf("port 127.0.0.1:%d: %v", w, err),
				portInUse: strings.Contains(err.Error(), "address already in use")}
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func (e *env) startEtcd(ctx context.Context, clientPort, peerPort int) error {
	data := e.path("etcd")
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	e.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	args := []string{
		"--name=testenv",
		"--data-dir=" + data,
		"--listen-client-urls=" + e.etcdURL,
		"--advertise-client-urls=" + e.etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=testenv=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=8589934592",
		"--log-level=warn",
	}
	args = append(args, e.o.etcdArgs...)
	p, err := startProc("etcd", filepath.Join(e.o.binDir, "etcd"), args, e.path("logs", "etcd.log"))
	if err != nil {
		return &startError{component: "etcd", msg: err.Error()}
	}
	e.etcd = p
	client := &http.Client{Timeout: 2 * time.Second}
	return waitReady(ctx, p, e.o.readyTimeout, func() error {
		resp, err := client.Get(e.etcdURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
			return fmt.Errorf("/health: %s %s", resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	})
}

func (e *env) startAPIServer(ctx context.Context, port int) error {
	e.apiURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	e.apiPort = port
	certDir := e.path("pki", "apiserver-generated")
	args := []string{
		"--etcd-servers=" + e.etcdURL,
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--cert-dir=" + certDir,
		"--tls-cert-file=" + e.pki.ServingCert,
		"--tls-private-key-file=" + e.pki.ServingKey,
		"--client-ca-file=" + e.pki.CACert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + e.pki.SAPubKey,
		"--service-account-signing-key-file=" + e.pki.ServiceAccountKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount,TaintNodesByCondition,Priority",
		"--allow-privileged=true",
	}
	if e.o.noAPILimits {
		args = append(args,
			"--enable-priority-and-fairness=false",
			"--max-requests-inflight=0",
			"--max-mutating-requests-inflight=0",
		)
	}
	args = append(args, e.o.apiserverArgs...)
	p, err := startProc("kube-apiserver", filepath.Join(e.o.binDir, "kube-apiserver"), args, e.path("logs", "kube-apiserver.log"))
	if err != nil {
		return &startError{component: "kube-apiserver", msg: err.Error()}
	}
	e.apiserver = p
	client, err := e.adminHTTPClient()
	if err != nil {
		return err
	}
	return waitReady(ctx, p, e.o.readyTimeout, func() error {
		for _, path := range []string{"/readyz", "/api/v1/namespaces/default"} {
			resp, err := client.Get(e.apiURL + path)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s %s", path, resp.Status, strings.TrimSpace(string(body)))
			}
		}
		return nil
	})
}

func (e *env) adminHTTPClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(e.pki.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("cannot parse generated CA certificate")
	}
	cert, err := tls.LoadX509KeyPair(e.pki.AdminCert, e.pki.AdminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{cert},
		}},
	}, nil
}

// waitReady polls check until it succeeds, the process exits, ctx is cancelled or timeout passes.
func waitReady(ctx context.Context, p *proc, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		if p.exited() {
			return procFailure(p, "process "+p.exitDescription())
		}
		if lastErr = check(); lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return procFailure(p, fmt.Sprintf("not ready after %s (last check: %v)", timeout, lastErr))
		}
		select {
		case <-ctx.Done():
			return procFailure(p, fmt.Sprintf("start-up aborted: %v", context.Cause(ctx)))
		case <-p.done:
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// stopAll stops kube-apiserver, then etcd.
func (e *env) stopAll() {
	for _, p := range []*proc{e.apiserver, e.etcd} {
		if p == nil {
			continue
		}
		p.stop(e.o.stopTimeout)
	}
	e.apiserver, e.etcd = nil, nil
}

func (e *env) cleanup() {
	if e.o.keepDir {
		logf("kept %s", e.dir)
		return
	}
	if e.ownDir {
		if err := os.RemoveAll(e.dir); err != nil {
			logf("warning: removing %s: %v", e.dir, err)
		}
		return
	}
	for _, name := range ownedEntries {
		_ = os.RemoveAll(e.path(name))
	}
	_ = os.Remove(e.dir) // only if now empty
}

func (e *env) writeKubeconfig(path string) error {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read(e.pki.CACert)
	if err != nil {
		return err
	}
	crt, err := read(e.pki.AdminCert)
	if err != nil {
		return err
	}
	key, err := read(e.pki.AdminKey)
	if err != nil {
		return err
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: ksched-testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: ksched-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: ksched-testenv
  context:
    cluster: ksched-testenv
    user: ksched-admin
    namespace: default
current-context: ksched-testenv
preferences: {}
`, e.apiURL, ca, crt, key)
	return writeAtomic(path, []byte(kc), 0o600)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
