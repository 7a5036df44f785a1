package chaos

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Accept makes the provider slow to take connections, as a loaded or
// undersized webhook endpoint is: the kernel queues at most Backlog
// connections that the server has not accepted yet (a SYN beyond that is
// dropped, and the caller's connect waits for its retransmission, a
// second or more later), the server pauses Delay before each accept, and
// every CloseEvery-th answer closes its connection, so that callers keep
// dialling instead of living on their keep-alive pool. Calls that wait on
// a connect past --provider-timeout time out and are retried. The zero
// value is an ordinary server.
type Accept struct {
	Backlog    int           `json:"backlog,omitempty"`
	Delay      time.Duration `json:"delay,omitempty"`
	CloseEvery int           `json:"close_every,omitempty"`
}

// listenLoopback listens on a free port of 127.0.0.1 with the given listen
// backlog (0: the system's, through net.Listen). Go has no setting for
// the backlog, so the socket is made by hand (Linux).
func listenLoopback(backlog int) (net.Listener, error) {
	if backlog <= 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("provider: listen: %w", err)
		}
		return ln, nil
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("provider: socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "provider-listener") // closes fd
	defer f.Close()                                   // net.FileListener keeps a copy
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return nil, fmt.Errorf("provider: bind: %w", err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		return nil, fmt.Errorf("provider: listen (backlog %d): %w", backlog, err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("provider: listener: %w", err)
	}
	return ln, nil
}

// slowListener pauses delay before each accept; Close ends a pause.
type slowListener struct {
	net.Listener
	delay  time.Duration
	once   sync.Once
	closed chan struct{}
}

func (l *slowListener) Accept() (net.Conn, error) {
	if l.delay > 0 {
		t := time.NewTimer(l.delay)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
		}
	}
	return l.Listener.Accept()
}

func (l *slowListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
