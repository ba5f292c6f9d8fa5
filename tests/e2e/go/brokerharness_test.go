package e2e

// Harness: runs the REAL ringbroker binary on free loopback ports with a
// temporary data dir, like tests/e2e/conftest.py does for the Python suite.
//
// Environment:
//   RINGBROKER_BIN     binary (default ../../../target/release/ringbroker,
//                      relative to tests/e2e/go)
//   RINGBROKER_CONFIG  config (default ../../../tuning/default.toml)
//   RUST_LOG           passed through (default "info")
//
// The broker's stdout+stderr go to a file in the test's temp dir; its tail is
// printed when the test fails. The process is SIGKILLed at cleanup.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	readyTimeout = 20 * time.Second
	stopTimeout  = 30 * time.Second
	logTailBytes = 20000
)

func repoRoot() string {
	// go test runs with the package dir (tests/e2e/go) as working directory.
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

func brokerBinary() string {
	if v := os.Getenv("RINGBROKER_BIN"); v != "" {
		if abs, err := filepath.Abs(v); err == nil {
			return abs
		}
		return v
	}
	return filepath.Join(repoRoot(), "target", "release", "ringbroker")
}

func brokerConfig() string {
	if v := os.Getenv("RINGBROKER_CONFIG"); v != "" {
		if abs, err := filepath.Abs(v); err == nil {
			return abs
		}
		return v
	}
	return filepath.Join(repoRoot(), "tuning", "default.toml")
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Broker is one ringbroker process managed by a test.
type Broker struct {
	t         testing.TB
	Bin       string
	Config    string
	BaseDir   string
	DataDir   string
	LogPath   string
	Host      string
	Port      int
	AdminPort int
	Starts    int
	// Cluster membership (StartCluster): node id, cluster listener port and
	// the quorum's voters; Voters is empty for a single node.
	NodeID      int
	ClusterPort int
	Voters      string

	mu      sync.Mutex
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed when the process has been reaped
	waitErr error
}

// StartBroker starts a fresh broker for this test (own dir, own ports) and
// registers its cleanup.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	b := newBroker(t)
	b.Start()
	return b
}

// StartCluster starts n brokers on 127.0.0.1 as one cluster: nodes 0..n-1,
// every one a voter of the metadata quorum. All are launched before any is
// awaited: a voter answers once a majority runs.
func StartCluster(t testing.TB, n int) []*Broker {
	t.Helper()
	nodes := make([]*Broker, n)
	voters := make([]string, n)
	for i := range nodes {
		nodes[i] = newBroker(t)
		nodes[i].NodeID = i
		nodes[i].ClusterPort = freePort(t)
		voters[i] = fmt.Sprintf("%d@127.0.0.1:%d", i, nodes[i].ClusterPort)
	}
	for _, b := range nodes {
		b.Voters = strings.Join(voters, ",")
		b.spawn()
	}
	for _, b := range nodes {
		b.waitReady(readyTimeout)
	}
	return nodes
}

// newBroker prepares a broker (own dir, own ports) and registers its cleanup.
func newBroker(t testing.TB) *Broker {
	t.Helper()
	base := t.TempDir()
	b := &Broker{
		t:       t,
		Bin:     brokerBinary(),
		Config:  brokerConfig(),
		BaseDir: base,
		DataDir: filepath.Join(base, "data"),
		LogPath: filepath.Join(base, "broker.stderr.log"),
		Host:    "127.0.0.1",
	}
	if err := os.MkdirAll(b.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b.Port = freePort(t)
	for i := 0; i < 50; i++ {
		b.AdminPort = freePort(t)
		if b.AdminPort != b.Port {
			break
		}
	}
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			t.Logf("%s", b.LogTail(logTailBytes))
		}
	})
	return b
}

// Addr is the bootstrap address host:port.
func (b *Broker) Addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

func (b *Broker) command() []string {
	args := []string{
		"serve",
		"--config", b.Config,
		"--listen", b.Addr(),
		"--data-dir", b.DataDir,
		"--admin-listen", net.JoinHostPort(b.Host, strconv.Itoa(b.AdminPort)),
	}
	if b.Voters != "" {
		args = append(args,
			"--node-id", strconv.Itoa(b.NodeID),
			"--cluster-listen", net.JoinHostPort(b.Host, strconv.Itoa(b.ClusterPort)),
			"--controller-quorum-voters", b.Voters)
	}
	return args
}

// Start launches the process (on the same data dir and ports as before) and
// waits until ApiVersions answers.
func (b *Broker) Start() {
	b.t.Helper()
	b.spawn()
	b.waitReady(readyTimeout)
}

// spawn launches the process without waiting for it.
func (b *Broker) spawn() {
	b.t.Helper()
	if b.Running() {
		b.t.Fatalf("broker already running")
	}
	if _, err := os.Stat(b.Bin); err != nil {
		b.t.Fatalf("ringbroker binary not found at %s (build it with `cargo build --release` or set RINGBROKER_BIN): %v", b.Bin, err)
	}
	if _, err := os.Stat(b.Config); err != nil {
		b.t.Fatalf("config not found at %s (set RINGBROKER_CONFIG): %v", b.Config, err)
	}
	lf, err := os.OpenFile(b.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	b.Starts++
	args := b.command()
	fmt.Fprintf(lf, "\n===== go e2e: start #%d: %s %s =====\n", b.Starts, b.Bin, strings.Join(args, " "))
	cmd := exec.Command(b.Bin, args...)
	cmd.Dir = b.BaseDir
	cmd.Stdin = nil
	cmd.Stdout = lf
	cmd.Stderr = lf
	env := os.Environ()
	if os.Getenv("RUST_LOG") == "" {
		env = append(env, "RUST_LOG=info")
	}
	if os.Getenv("RUST_BACKTRACE") == "" {
		env = append(env, "RUST_BACKTRACE=1")
	}
	cmd.Env = env
	// Own process group, and die with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		b.t.Fatalf("start broker: %v", err)
	}
	done := make(chan struct{})
	b.mu.Lock()
	b.cmd = cmd
	b.logFile = lf
	b.done = done
	b.waitErr = nil
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.waitErr = err
		b.mu.Unlock()
		close(done)
	}()
}

func (b *Broker) waitReady(timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			b.t.Fatalf("broker exited (%v) before becoming ready\n%s", b.exitErr(), b.LogTail(logTailBytes))
		default:
		}
		if err := apiVersionsProbe(b.Addr(), 2*time.Second); err == nil {
			return
		} else {
			lastErr = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Kill()
	b.t.Fatalf("broker not ready within %v (last error: %v)\n%s", timeout, lastErr, b.LogTail(logTailBytes))
}

// apiVersionsProbe sends ApiVersions v0 and checks error_code == 0 and a
// non-empty API list.
func apiVersionsProbe(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	clientID := "go-e2e-probe"
	var body bytes.Buffer
	_ = binary.Write(&body, binary.BigEndian, int16(18)) // ApiVersions
	_ = binary.Write(&body, binary.BigEndian, int16(0))  // version
	_ = binary.Write(&body, binary.BigEndian, int32(7))  // correlation id
	_ = binary.Write(&body, binary.BigEndian, int16(len(clientID)))
	body.WriteString(clientID)
	frame := make([]byte, 4+body.Len())
	binary.BigEndian.PutUint32(frame, uint32(body.Len()))
	copy(frame[4:], body.Bytes())
	if _, err := conn.Write(frame); err != nil {
		return err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 10 || n > 1<<20 {
		return fmt.Errorf("bad ApiVersions response size %d", n)
	}
	resp := make([]byte, n)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return err
	}
	if corr := int32(binary.BigEndian.Uint32(resp[0:4])); corr != 7 {
		return fmt.Errorf("correlation id %d", corr)
	}
	if ec := int16(binary.BigEndian.Uint16(resp[4:6])); ec != 0 {
		return fmt.Errorf("ApiVersions error_code=%d", ec)
	}
	if cnt := int32(binary.BigEndian.Uint32(resp[6:10])); cnt <= 0 {
		return fmt.Errorf("ApiVersions returned %d apis", cnt)
	}
	return nil
}

func (b *Broker) exitErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waitErr
}

// Running reports whether the process is alive.
func (b *Broker) Running() bool {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop is a clean shutdown: SIGTERM, wait, require exit status 0.
func (b *Broker) Stop() {
	b.t.Helper()
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		b.t.Fatalf("broker was never started")
	}
	if b.Running() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			b.Kill()
			b.t.Fatalf("broker did not exit within %v of SIGTERM\n%s", stopTimeout, b.LogTail(logTailBytes))
		}
	}
	b.closeLog()
	if err := b.exitErr(); err != nil {
		b.t.Fatalf("broker exited with %v after SIGTERM\n%s", err, b.LogTail(logTailBytes))
	}
}

// Kill is a crash: SIGKILL (the whole process group) and reap.
func (b *Broker) Kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd != nil && b.Running() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
	}
	b.closeLog()
}

// Restart stops cleanly and starts again on the same data dir and ports.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.Start()
}

func (b *Broker) closeLog() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.logFile != nil {
		_ = b.logFile.Close()
		b.logFile = nil
	}
}

// LogText is everything the broker wrote so far.
func (b *Broker) LogText() string {
	data, err := os.ReadFile(b.LogPath)
	if err != nil {
		return ""
	}
	return string(data)
}

// LogTail is the last n bytes of the broker log, framed for a test report.
func (b *Broker) LogTail(n int) string {
	text := b.LogText()
	if len(text) > n {
		text = "...[truncated]...\n" + text[len(text)-n:]
	}
	return fmt.Sprintf("----- ringbroker stderr (%s) -----\n%s\n----- end -----", b.LogPath, text)
}

// ---------------------------------------------------------------- helpers

// testCtx is a context bounded by d and by the test's own deadline.
func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls f until it returns nil or d elapses.
func eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	start := time.Now()
	for {
		if err = f(); err == nil {
			if el := time.Since(start); el > 3*time.Second {
				t.Logf("%s: took %v", what, el.Round(10*time.Millisecond))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// uniqueName returns a topic/group name unique within this test binary.
var nameSeq atomic.Int64

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, nameSeq.Add(1), time.Now().UnixNano()%1_000_000)
}

// murmur2 is Kafka's DefaultPartitioner hash (Utils.murmur2 in the Java
// client); partition = toPositive(murmur2(key)) % n.
func murmur2(data []byte) int32 {
	length := len(data)
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(length)
	length4 := length / 4
	for i := 0; i < length4; i++ {
		i4 := i * 4
		k := uint32(data[i4+0]) | uint32(data[i4+1])<<8 | uint32(data[i4+2])<<16 | uint32(data[i4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch length % 4 {
	case 3:
		h ^= uint32(data[(length & ^3)+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[(length & ^3)+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[length & ^3])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

func murmur2Partition(key []byte, n int) int {
	return int(murmur2(key)&0x7fffffff) % n
}
