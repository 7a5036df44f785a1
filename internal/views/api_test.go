package views_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/ingest"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

const (
	email = "jane.doe@example.com"
	phone = "+821012345678"
)

// routes lists every /v1 route with a request that would succeed.
func routes(id string) []struct{ method, path, body string } {
	return []struct{ method, path, body string }{
		{"GET", "/v1/messages/" + id, ""},
		{"POST", "/v1/messages/lookup", `{"ids":["` + id + `"]}`},
		{"POST", "/v1/messages", string(request("auth-new", nil))},
		{"POST", "/v1/messages/" + id + "/cancel", ""},
		{"GET", "/v1/campaigns/statements-2026-01", ""},
	}
}

func TestAPIWithoutToken(t *testing.T) {
	s := startStack(t, stackOptions{maxBody: 64 << 10})

	t.Run("routes need no token", func(t *testing.T) {
		// The routes cancel their message, so they get one of their own:
		// open-1 must still be scheduled when the subtests below read it.
		for _, id := range []string{"open-0", "open-1"} {
			s.call("POST", "/v1/messages", "", "", request(id, later(time.Hour)), nil)
			s.state(id, statusIs(contract.StatusScheduled))
		}
		for _, r := range routes("open-0") {
			code, b := s.call(r.method, r.path, "", "", []byte(r.body), nil)
			if code == http.StatusUnauthorized || code >= 500 && !strings.Contains(r.path, "campaigns") {
				t.Errorf("%s %s: %d %s", r.method, r.path, code, b)
			}
		}
	})

	t.Run("reveal needs a token", func(t *testing.T) {
		code, b := s.call("GET", "/v1/messages/open-1?reveal=1", "", "", nil, nil)
		if code != http.StatusForbidden || bytes.Contains(b, []byte(email)) {
			t.Errorf("reveal without a token: %d %s", code, b)
		}
		code, b = s.call("POST", "/v1/messages/lookup?reveal=1", "", "", []byte(`{"ids":["open-1"]}`), nil)
		if code != http.StatusForbidden || bytes.Contains(b, []byte(email)) {
			t.Errorf("lookup reveal without a token: %d %s", code, b)
		}
	})

	t.Run("get masks addresses", func(t *testing.T) {
		var m views.Message
		code, b := s.call("GET", "/v1/messages/open-1", "", "", nil, &m)
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, b)
		}
		if bytes.Contains(b, []byte(email)) || bytes.Contains(b, []byte(phone)) || bytes.Contains(b, []byte("12.30")) {
			t.Errorf("answer leaks an address or the content: %s", b)
		}
		if m.Recipient.Email != "j***@example.com" || m.Recipient.Phone != contract.MaskAddress(phone) || !m.Masked {
			t.Errorf("recipient %+v masked=%v", m.Recipient, m.Masked)
		}
		if m.Status != contract.StatusScheduled || m.HoldReason != contract.HoldSchedule || m.NextAttemptAt == nil ||
			m.Version != dispatcher.NextVersion(0, 1) || m.Campaign != "statements-2026-01" || !slices.Equal(m.Channels, []contract.Channel{"email", "sms"}) {
			t.Errorf("message %s", b)
		}
	})

	t.Run("get unknown id", func(t *testing.T) {
		var e map[string]any
		code, _ := s.call("GET", "/v1/messages/no-such-id", "", "", nil, &e)
		if code != http.StatusNotFound || e["id"] != "no-such-id" || e["error"] == "" {
			t.Errorf("%d %v", code, e)
		}
	})

	t.Run("ids with slashes and spaces", func(t *testing.T) {
		id := "2026/01 user:7"
		s.call("POST", "/v1/messages", "", "", request(id, later(time.Hour)), nil)
		s.state(id, statusIs(contract.StatusScheduled))
		var m views.Message
		code, b := s.call("GET", "/v1/messages/2026%2F01%20user:7", "", "", nil, &m)
		if code != http.StatusOK || m.ID != id {
			t.Errorf("%d %s", code, b)
		}
	})

	t.Run("lookup", func(t *testing.T) {
		s.call("POST", "/v1/messages", "", "", request("look-2", later(time.Hour)), nil)
		s.state("look-2", statusIs(contract.StatusScheduled))
		var lr views.LookupResponse
		code, b := s.call("POST", "/v1/messages/lookup", "", "", []byte(`{"ids":["look-2","nope","open-1","look-2"]}`), &lr)
		if code != http.StatusOK || len(lr.Messages) != 2 || lr.Messages[0].ID != "look-2" || lr.Messages[1].ID != "open-1" ||
			!slices.Equal(lr.Unknown, []string{"nope"}) || bytes.Contains(b, []byte(email)) {
			t.Errorf("%d %s", code, b)
		}
		ids := make([]string, 1001)
		for i := range ids {
			ids[i] = fmt.Sprint("id-", i)
		}
		body, _ := json.Marshal(views.LookupRequest{IDs: ids})
		if code, b := s.call("POST", "/v1/messages/lookup", "", "", body, nil); code != http.StatusBadRequest {
			t.Errorf("1001 ids: %d %s", code, b)
		}
		body, _ = json.Marshal(views.LookupRequest{IDs: ids[:1000]})
		if code, b := s.call("POST", "/v1/messages/lookup", "", "", body, &lr); code != http.StatusOK || len(lr.Unknown) != 1000 {
			t.Errorf("1000 ids: %d %.200s", code, b)
		}
		for _, bad := range []string{`{"ids":[]}`, `{}`, `["a"]`, `{"ids":`} {
			if code, b := s.call("POST", "/v1/messages/lookup", "", "", []byte(bad), nil); code != http.StatusBadRequest {
				t.Errorf("%s: %d %s", bad, code, b)
			}
		}
	})

	t.Run("ingest one", func(t *testing.T) {
		var r views.IngestResponse
		code, b := s.call("POST", "/v1/messages", "", "application/json", request("one-1", later(time.Hour)), &r)
		if code != http.StatusAccepted || r.Accepted != 1 || r.Items[0].ID != "one-1" || r.Items[0].Result != ingest.ResultAccepted {
			t.Errorf("%d %s", code, b)
		}
		s.state("one-1", statusIs(contract.StatusScheduled))
		code, b = s.call("POST", "/v1/messages", "", "application/json", request("one-1", nil), &r)
		if code != http.StatusOK || r.Duplicates != 1 || r.Items[0].Status != contract.StatusScheduled {
			t.Errorf("again: %d %s", code, b)
		}
		code, b = s.call("POST", "/v1/messages", "", "", request("one-2", func(m map[string]any) {
			delete(m, "campaign")
			m["channels"] = []string{"email", "fax"}
		}), &r)
		if code != http.StatusUnprocessableEntity || r.Rejected != 1 || r.Items[0].ID != "one-2" ||
			!hasField(r.Items[0].Errors, "campaign") || !hasField(r.Items[0].Errors, "channels[1]") {
			t.Errorf("invalid: %d %s", code, b)
		}
	})

	t.Run("ingest a mixed batch", func(t *testing.T) {
		items := [][]byte{
			request("mix-1", later(time.Hour)),
			request("mix-2", func(m map[string]any) { m["schema"] = "herald.dispatch.v2" }),
			request("mix-3", later(time.Hour)),
			request("mix-1", later(time.Hour)), // repeated in the batch
			request("open-1", nil),             // known
			[]byte(`{"id": 7}`),
			request("mix-4", func(m map[string]any) { m["recipient"] = map[string]any{"email": "nobody"} }),
		}
		want := []string{"accepted", "rejected", "accepted", "duplicate", "duplicate", "rejected", "rejected"}
		array := append(append([]byte("["), bytes.Join(items, []byte(",\n"))...), ']')
		var r views.IngestResponse
		code, b := s.call("POST", "/v1/messages", "", "application/json", array, &r)
		if code != http.StatusOK || r.Accepted != 2 || r.Duplicates != 2 || r.Rejected != 3 || len(r.Items) != len(items) {
			t.Fatalf("%d %s", code, b)
		}
		for i, it := range r.Items {
			if it.Index != i || it.Result != want[i] {
				t.Errorf("item %d: %+v, want %s", i, it, want[i])
			}
		}
		if !hasField(r.Items[1].Errors, "schema") || r.Items[1].ID != "mix-2" || !hasField(r.Items[5].Errors, "id") ||
			!hasField(r.Items[6].Errors, "recipient.email") || r.Items[4].Status == "" {
			t.Errorf("details: %s", b)
		}
		s.state("mix-3", statusIs(contract.StatusScheduled))
		// Only the valid, new ones were published.
		// The batch was acknowledged as a whole before the answer, so what
		// a short read finds is all there is.
		recs := s.cluster.Consume(t, topology.TopicRequests, 2*time.Second, func(rs []*kgo.Record) bool { return false })
		var keys []string
		for _, rec := range recs {
			if strings.HasPrefix(string(rec.Key), "mix-") {
				keys = append(keys, string(rec.Key))
			}
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"mix-1", "mix-3"}) {
			t.Errorf("published %v", keys)
		}
	})

	t.Run("ingest JSONL", func(t *testing.T) {
		body := bytes.Join([][]byte{request("line-1", later(time.Hour)), {}, []byte(`{"schema": "herald.dispatch.v1", "id": "line-3"`),
			request("line-4", later(time.Hour))}, []byte("\r\n"))
		for _, ct := range []string{"application/x-ndjson", ""} { // named, then sniffed
			var r views.IngestResponse
			code, b := s.call("POST", "/v1/messages", "", ct, body, &r)
			if code != http.StatusOK || len(r.Items) != 3 {
				t.Fatalf("%q: %d %s", ct, code, b)
			}
			if r.Items[1].Line != 3 || r.Items[1].Result != ingest.ResultRejected || !hasField(r.Items[1].Errors, "json") ||
				r.Items[2].Line != 4 || r.Items[2].ID != "line-4" {
				t.Errorf("%q: %s", ct, b)
			}
			if ct != "" && (r.Accepted != 2 || r.Items[0].Line != 1) {
				t.Errorf("first post: %s", b)
			}
			if ct == "" && r.Duplicates != 2 {
				t.Errorf("second post: %s", b)
			}
			s.state("line-4", statusIs(contract.StatusScheduled))
		}
	})

	t.Run("ids are text", func(t *testing.T) {
		var r views.IngestResponse
		body := request("nul\x00id", func(m map[string]any) { m["campaign"] = "line\nbreak" })
		code, b := s.call("POST", "/v1/messages", "", "application/json", body, &r)
		if code != http.StatusUnprocessableEntity || r.Rejected != 1 || !hasField(r.Items[0].Errors, "id") ||
			!hasField(r.Items[0].Errors, "campaign") || !bytes.Contains(b, []byte("must not contain control characters: U+0000")) {
			t.Errorf("control characters: %d %s", code, b)
		}
	})

	t.Run("ingest bad bodies", func(t *testing.T) {
		for _, body := range []string{"", "   ", "hello", `"a string"`, "42"} {
			var e map[string]any
			code, _ := s.call("POST", "/v1/messages", "", "application/json", []byte(body), &e)
			if code != http.StatusBadRequest || e["error"] == nil || e["code"] != views.CodeBadRequest {
				t.Errorf("%q: %d %v", body, code, e)
			}
		}
		// An array is answered per item, even an unclosed one.
		var ar views.IngestResponse
		if code, b := s.call("POST", "/v1/messages", "", "", []byte("[1, 2"), &ar); code != http.StatusOK || ar.Rejected != 2 {
			t.Errorf("[1, 2: %d %s", code, b)
		}
		// One line that is not one object is an item, rejected.
		var r views.IngestResponse
		if code, b := s.call("POST", "/v1/messages", "", "", []byte(`{"id": "x"} trailing`), &r); code != http.StatusUnprocessableEntity || r.Rejected != 1 {
			t.Errorf("trailing data: %d %s", code, b)
		}
	})

	t.Run("body size limit", func(t *testing.T) {
		big := make([][]byte, 0, 200)
		for i := 0; len(bytes.Join(big, []byte("\n"))) <= 64<<10; i++ {
			big = append(big, request(fmt.Sprint("big-", i), later(time.Hour)))
		}
		body := bytes.Join(big, []byte("\n"))
		code, b := s.call("POST", "/v1/messages", "", "application/x-ndjson", body, nil)
		if code != http.StatusRequestEntityTooLarge || !bytes.Contains(b, []byte("65536")) {
			t.Errorf("with Content-Length: %d %s", code, b)
		}
		// Chunked, without a Content-Length: cut off while reading.
		req, _ := http.NewRequest("POST", s.srv.URL+"/v1/messages", struct{ *bytes.Reader }{bytes.NewReader(body)})
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked: %d", resp.StatusCode)
		}
		if st, _ := s.view.Get("big-0"); st != nil {
			t.Errorf("part of a too-large body was published")
		}
	})

	t.Run("cancel", func(t *testing.T) {
		s.call("POST", "/v1/messages", "", "", request("can-1", later(time.Hour)), nil)
		s.call("POST", "/v1/messages", "", "", request("can-2", later(time.Hour)), nil)
		s.state("can-1", statusIs(contract.StatusScheduled))
		s.state("can-2", statusIs(contract.StatusScheduled))

		var cr views.CancelResponse
		code, b := s.call("POST", "/v1/messages/can-1/cancel", "", "", []byte(`{"reason":"customer closed the account"}`), &cr)
		if code != http.StatusAccepted || cr.Result != views.CancelRequested || cr.Status != contract.StatusScheduled {
			t.Errorf("%d %s", code, b)
		}
		st := s.state("can-1", statusIs(contract.StatusCanceled))
		if st.LastError != "canceled: customer closed the account" {
			t.Errorf("last error %q", st.LastError)
		}
		code, b = s.call("POST", "/v1/messages/can-2/cancel?wait=10s", "", "", nil, &cr)
		if code != http.StatusOK || cr.Result != views.CancelDone || cr.Status != contract.StatusCanceled {
			t.Errorf("with wait: %d %s", code, b)
		}
		// Idempotent: a canceled one answers as the cancel that saw it.
		_, withWait := s.call("POST", "/v1/messages/can-2/cancel", "", "", nil, nil)
		code, again := s.call("POST", "/v1/messages/can-2/cancel", "", "", nil, &cr)
		if code != http.StatusOK || string(again) != string(b) || string(withWait) != string(b) {
			t.Errorf("again: %d %s, want 200 %s", code, again, b)
		}
		if code, b := s.call("POST", "/v1/messages/nope/cancel", "", "", nil, nil); code != http.StatusNotFound {
			t.Errorf("unknown: %d %s", code, b)
		}
		for _, q := range []string{"?wait=soon", "?wait=-1s", "?wait=60s"} {
			if code, b := s.call("POST", "/v1/messages/can-1/cancel"+q, "", "", nil, nil); code != http.StatusBadRequest {
				t.Errorf("%s: %d %s", q, code, b)
			}
		}
		if code, b := s.call("POST", "/v1/messages/can-1/cancel", "", "", []byte("{"), nil); code != http.StatusBadRequest {
			t.Errorf("bad body: %d %s", code, b)
		}
	})

	t.Run("cancel while sending or sent", func(t *testing.T) {
		s.call("POST", "/v1/messages", "", "", request("snd-1", nil), nil)
		st := s.state("snd-1", statusIs(contract.StatusSending))
		var cr views.CancelResponse
		// Accepted until the call starts; the answer says a started call
		// cannot be taken back. This stack has no sender: the result below
		// stands for a call that had started, and it delivered.
		code, b := s.call("POST", "/v1/messages/snd-1/cancel", "", "", nil, &cr)
		if code != http.StatusAccepted || cr.Status != contract.StatusSending || cr.Result != views.CancelRequested ||
			!strings.Contains(cr.Note, "cannot be taken back") {
			t.Errorf("sending: %d %s", code, b)
		}
		s.state("snd-1", statusIs(contract.StatusCanceled))
		s.result(st, contract.OutcomeSuccess, "")
		s.state("snd-1", statusIs(contract.StatusSent))
		code, b = s.call("POST", "/v1/messages/snd-1/cancel", "", "", nil, &cr)
		if code != http.StatusConflict || cr.Status != contract.StatusSent || cr.Code != views.CodeConflict || cr.Error == "" {
			t.Errorf("sent: %d %s", code, b)
		}
	})

	t.Run("cancel through a lagging view while the command is queued", func(t *testing.T) {
		// The view lags the dispatcher: it still shows the notification
		// scheduled when the dispatcher has already issued its command.
		// The cancel is accepted, and the dispatcher cancels the queued
		// command (the sender skips a canceled notification's command).
		s.call("POST", "/v1/messages", "", "", request("race-1", later(300*time.Millisecond)), nil)
		held := s.state("race-1", statusIs(contract.StatusScheduled))
		time.Sleep(time.Until(*held.NextAttemptAt))
		s.wakeup(held) // what the delay stage does when it is due
		sending := s.state("race-1", statusIs(contract.StatusSending))

		stale := new(atomic.Int32)
		lagging := *s.api
		lagging.Table = laggingTable{Table: s.view, old: held, stale: stale}
		srv := httpServer(t, lagging.Handler())
		stale.Store(1)
		var cr views.CancelResponse
		resp, err := http.Post(srv+"/v1/messages/race-1/cancel?wait=5s", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&cr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || cr.Result != views.CancelDone {
			t.Fatalf("cancel through a stale view: %d %+v, want 200 canceled", resp.StatusCode, cr)
		}
		if st, _ := s.view.Get("race-1"); st.Status != contract.StatusCanceled || st.Version <= sending.Version {
			t.Errorf("after the cancel: %s v%d (sending was v%d)", st.Status, st.Version, sending.Version)
		}
	})

	t.Run("publish failures", func(t *testing.T) {
		// A producer whose brokers are gone: the client gives up on each
		// record after a second.
		dead, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1"),
			kgo.RecordDeliveryTimeout(time.Second)}, topology.KgoProducerOpts()...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer dead.Close()
		broken := *s.api
		broken.Producer = dead
		srv := httpServer(t, broken.Handler())
		body := []byte("[" + string(request("pf-1", nil)) + "," + string(request("open-1", nil)) + "]")
		resp, err := http.Post(srv+"/v1/messages", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var r views.IngestResponse
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || r.Failed != 1 ||
			r.Items[0].Result != ingest.ResultFailed || r.Items[0].Error == "" || r.Items[1].Result != ingest.ResultDuplicate {
			t.Errorf("ingest: %d %+v", resp.StatusCode, r)
		}
		s.call("POST", "/v1/messages", "", "", request("pf-2", later(time.Hour)), nil)
		s.state("pf-2", statusIs(contract.StatusScheduled))
		resp, err = http.Post(srv+"/v1/messages/pf-2/cancel", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("cancel: %d", resp.StatusCode)
		}
		if st, _ := s.view.Get("pf-2"); st.Status != contract.StatusScheduled {
			t.Errorf("pf-2 is %s", st.Status)
		}
	})

	t.Run("campaigns without a database", func(t *testing.T) {
		if code, b := s.call("GET", "/v1/campaigns/statements-2026-01", "", "", nil, nil); code != http.StatusServiceUnavailable {
			t.Errorf("%d %s", code, b)
		}
	})

	t.Run("unknown routes", func(t *testing.T) {
		for _, r := range []struct {
			method, path string
			code         int
			allow        string
		}{
			{"GET", "/v1/nothing", http.StatusNotFound, ""},
			{"GET", "/v1", http.StatusNotFound, ""},
			{"DELETE", "/v1/messages/open-1", http.StatusMethodNotAllowed, "GET, HEAD"},
			{"PUT", "/v1/messages", http.StatusMethodNotAllowed, "GET, HEAD, POST"},
			{"GET", "/v1/messages/open-1/cancel", http.StatusMethodNotAllowed, "POST"},
		} {
			req, _ := http.NewRequest(r.method, s.srv.URL+r.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e views.ErrorBody
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			want := views.CodeNotFound
			if r.code == http.StatusMethodNotAllowed {
				want = views.CodeMethodNotAllowed
			}
			if resp.StatusCode != r.code || e.Code != want || e.Error == "" || resp.Header.Get("Allow") != r.allow ||
				resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: %d %+v allow %q", r.method, r.path, resp.StatusCode, e, resp.Header.Get("Allow"))
			}
		}
	})

	t.Run("goka monitor", func(t *testing.T) {
		get := func(path string) (int, string) {
			resp, err := http.Get(s.srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			return resp.StatusCode, b.String()
		}
		if code, b := get("/goka/"); code != http.StatusOK || !strings.Contains(b, "herald-dispatcher") {
			t.Errorf("index: %d %.300s", code, b)
		}
		if code, b := get("/goka/processor/0"); code != http.StatusOK || !strings.Contains(b, "herald-dispatcher") {
			t.Errorf("processor page: %d %.300s", code, b)
		}
		var stats map[string]any
		code, b := get("/goka/data/processor/0")
		if err := json.Unmarshal([]byte(b), &stats); code != http.StatusOK || err != nil || stats["Group"] == nil {
			t.Errorf("processor stats: %d %.300s", code, b)
		}
		code, b = get("/goka/data/view/0")
		if err := json.Unmarshal([]byte(b), &stats); code != http.StatusOK || err != nil || stats["Partitions"] == nil {
			t.Errorf("view stats: %d %.300s", code, b)
		}
		if code, _ := get("/goka/data/processor/1"); code != http.StatusNotFound {
			t.Errorf("one past the end: %d", code)
		}
	})

	t.Run("API metrics", func(t *testing.T) {
		m := s.scrape()
		if m[`herald_api_ingested_items_total{result="rejected"}`] < 5 || m[`herald_api_cancels_total{outcome="conflict"}`] < 1 ||
			m[`herald_api_cancels_total{outcome="canceled"}`] < 3 ||
			m[`herald_api_requests_total{code="404",route="GET /v1/messages/{id}"}`] < 1 {
			t.Errorf("API metrics missing: %v", filter(m, "herald_api_"))
		}
	})
}

func TestAPIWithToken(t *testing.T) {
	const token = "s3cret-token"
	s := startStack(t, stackOptions{token: token})
	code, b := s.call("POST", "/v1/messages", token, "", request("tok-1", nil), nil)
	if code != http.StatusAccepted {
		t.Fatalf("%d %s", code, b)
	}
	st := s.state("tok-1", statusIs(contract.StatusSending))
	s.result(st, contract.OutcomePermanent, "550 5.1.1 <"+email+">: mailbox unavailable")
	s.state("tok-1", statusIs(contract.StatusSending)) // now on sms
	s.state("tok-1", func(st *contract.State) bool { return st.Channel == contract.ChannelSMS })

	t.Run("every route needs the token", func(t *testing.T) {
		for _, r := range routes("tok-1") {
			for _, tok := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
				req, _ := http.NewRequest(r.method, s.srv.URL+r.path, strings.NewReader(r.body))
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s with %q: %d", r.method, r.path, tok, resp.StatusCode)
				}
			}
			// Basic auth carrying the token is not a bearer token.
			req, _ := http.NewRequest(r.method, s.srv.URL+r.path, strings.NewReader(r.body))
			req.SetBasicAuth("herald", token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with basic auth: %d", r.method, r.path, resp.StatusCode)
			}
		}
		if n := s.scrape()[`herald_api_requests_total{code="401",route="none"}`]; n < 25 {
			t.Errorf("401s counted: %v in %v", n, filter(s.scrape(), "herald_api_requests"))
		}
	})

	t.Run("the token opens every route", func(t *testing.T) {
		// The routes cancel their message: tok-1 is read below as it is.
		s.call("POST", "/v1/messages", token, "", request("tok-2", later(time.Hour)), nil)
		s.state("tok-2", statusIs(contract.StatusScheduled))
		for _, r := range routes("tok-2") {
			code, b := s.call(r.method, r.path, token, "", []byte(r.body), nil)
			if code == http.StatusUnauthorized || code == http.StatusForbidden {
				t.Errorf("%s %s: %d %s", r.method, r.path, code, b)
			}
		}
	})

	t.Run("masked without reveal, in errors too", func(t *testing.T) {
		var m views.Message
		code, b := s.call("GET", "/v1/messages/tok-1", token, "", nil, &m)
		if code != http.StatusOK || bytes.Contains(b, []byte(email)) || bytes.Contains(b, []byte(phone)) {
			t.Fatalf("%d %s", code, b)
		}
		if len(m.History) != 1 || !strings.Contains(m.History[0].Error, "<j***@example.com>") ||
			!strings.Contains(m.LastError, "j***@example.com") || m.Content != nil {
			t.Errorf("history %+v, last error %q", m.History, m.LastError)
		}
	})

	t.Run("reveal", func(t *testing.T) {
		var m views.Message
		code, b := s.call("GET", "/v1/messages/tok-1?reveal=1", token, "", nil, &m)
		if code != http.StatusOK || m.Masked || m.Recipient.Email != email || m.Recipient.Phone != phone ||
			!strings.Contains(m.History[0].Error, email) || !bytes.Contains(m.Content, []byte("12.30")) {
			t.Errorf("%d %s", code, b)
		}
		var lr views.LookupResponse
		code, b = s.call("POST", "/v1/messages/lookup?reveal=true", token, "", []byte(`{"ids":["tok-1"]}`), &lr)
		if code != http.StatusOK || len(lr.Messages) != 1 || lr.Messages[0].Recipient.Email != email {
			t.Errorf("lookup: %d %s", code, b)
		}
		if code, b := s.call("GET", "/v1/messages/tok-1?reveal=yes-please", token, "", nil, nil); code != http.StatusBadRequest {
			t.Errorf("bad reveal: %d %s", code, b)
		}
		if code, b := s.call("GET", "/v1/messages/tok-1?reveal=0", token, "", nil, &m); code != http.StatusOK || !m.Masked {
			t.Errorf("reveal=0: %d %s", code, b)
		}
		// Every reveal is logged with the ids it exposed.
		if code, b := s.call("POST", "/v1/messages/lookup?reveal=1", token, "", []byte(`{"ids":["tok-1","nope"]}`), nil); code != http.StatusOK {
			t.Errorf("lookup reveal: %d %s", code, b)
		}
		if logs := s.logs.String(); !strings.Contains(logs, `msg="api: addresses revealed" ids=[tok-1]`) ||
			!strings.Contains(logs, `msg="api: addresses revealed" id=tok-1`) {
			t.Errorf("reveals not logged with their ids:\n%s", logs)
		}
	})

	t.Run("logs never hold an address", func(t *testing.T) {
		logs := s.logs.String()
		if !strings.Contains(logs, "addresses revealed") || !strings.Contains(logs, "api request") {
			t.Errorf("expected log lines missing:\n%s", logs)
		}
		for _, a := range []string{email, phone, "12.30"} {
			if strings.Contains(logs, a) {
				t.Errorf("the logs hold %q", a)
			}
		}
	})
}

// TestNotReady checks that the routes that read the view answer 503 until
// it has recovered.
func TestNotReady(t *testing.T) {
	c := startCluster(t)
	view, err := tableview.NewStateView(c.Topology, filepath.Join(t.TempDir(), "views"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	api := &views.Server{Table: view, Producer: c.Client(t)}
	srv := httpServer(t, api.Handler())
	for _, r := range routes("x")[:4] {
		req, _ := http.NewRequest(r.method, srv+r.path, strings.NewReader(r.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s before recovery: %d", r.method, r.path, resp.StatusCode)
		}
	}
	stop := heraldtest.Background(t, "view", view.Run)
	heraldtest.WaitFor(t, 30*time.Second, "view recovered", view.Recovered)
	resp, err := http.Get(srv + "/v1/messages/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("after recovery: %d", resp.StatusCode)
	}
	stop()
}

func hasField(fs []contract.FieldError, field string) bool {
	for _, f := range fs {
		if f.Field == field {
			return true
		}
	}
	return false
}

func filter(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// laggingTable is a view that lags: its next stale reads of one id answer
// the state as it was.
type laggingTable struct {
	views.Table
	old   *contract.State
	stale *atomic.Int32
}

func (l laggingTable) Get(id string) (*contract.State, error) {
	if id == l.old.ID && l.stale.Add(-1) >= 0 {
		return l.old, nil
	}
	return l.Table.Get(id)
}
