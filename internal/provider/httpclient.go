package provider

import (
	"net"
	"net/http"
	"time"
)

// httpClient is the HTTP client of every provider that speaks HTTP (the
// webhook, templates): connections kept alive and pooled by the send
// concurrency, and no redirects followed. (The request itself is made
// not replayable by each provider: see Webhook.Send.)
func httpClient(o Options) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          o.Concurrency,
			MaxIdleConnsPerHost:   o.Concurrency,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			ResponseHeaderTimeout: o.Timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
