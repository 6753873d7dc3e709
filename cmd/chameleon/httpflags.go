package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/serve"
)

// addLimitFlags adds the connection defences shared by `serve` and `demo`
// (serve.Limits).
func addLimitFlags(c *cobra.Command, l *serve.Limits) {
	f := c.Flags()
	f.DurationVar(&l.BodyTimeout, "body-timeout", serve.DefaultBodyTimeout, "a request's body must arrive within this after its headers (408 beyond); a response streamed after it is not limited")
	f.DurationVar(&l.WriteTimeout, "write-timeout", serve.DefaultWriteTimeout, "a client must take each write (each streamed event) within this, or the connection is closed")
	f.DurationVar(&l.IdleTimeout, "idle-timeout", serve.DefaultIdleTimeout, "close a keep-alive connection after this long without a request")
	f.IntVar(&l.MaxConns, "max-conns", 0, fmt.Sprintf("open connections at most; at the cap idle ones are closed first (0: %d, or the descriptor limit less 64 if lower)", serve.DefaultMaxConns))
	f.StringSliceVar(&l.AllowedHosts, "allow-host", nil, "Host header values (host or host:port, comma-separated or repeated) accepted besides localhost, 127.0.0.1 and [::1] on a loopback address; on other addresses any Host is accepted unless this is given; \"*\": any")
}

// checkLimits refuses timeouts and caps that cannot be honoured.
func checkLimits(l serve.Limits) error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--body-timeout", l.BodyTimeout}, {"--write-timeout", l.WriteTimeout}, {"--idle-timeout", l.IdleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s %v: want a positive duration", d.flag, d.v)
		}
	}
	if l.MaxConns < 0 {
		return fmt.Errorf("--max-conns %d: want at least 1 (0: the default)", l.MaxConns)
	}
	return nil
}
