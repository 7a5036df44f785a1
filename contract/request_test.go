package contract

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// validRequest returns a complete, valid request as a JSON tree that a test
// row can change.
func validRequest() map[string]any {
	return map[string]any{
		"schema":   SchemaV1,
		"id":       "2026-01:user-123:bill",
		"campaign": "billing-2026-01",
		"recipient": map[string]any{
			"email": "jane@example.com", "phone": "+821012345678", "push_token": "tok-abcdef123456", "tz": "Asia/Seoul",
		},
		"channels": []any{"email", "sms"},
		"content":  map[string]any{"template": "statement", "amount": "42.00"},
		"policy": map[string]any{
			"id": "billing", "version": 3, "attempts_per_channel": 4,
			"backoff": map[string]any{"initial": "2s", "multiplier": 3, "max": "5m"},
		},
		"blackout":   []any{map[string]any{"from": "22:00", "to": "06:00"}},
		"not_before": "2026-01-31T09:00:00Z",
		"expires_at": "2026-02-15T00:00:00+09:00",
	}
}

const validKey = "2026-01:user-123:bill"

func sub(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeValid(t *testing.T) {
	t.Parallel()
	r, err := Decode([]byte(validKey), encode(t, validRequest()))
	if err != nil {
		t.Fatal(err)
	}
	nb := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	exp := time.Date(2026, 2, 14, 15, 0, 0, 0, time.UTC)
	want := Request{
		Schema: SchemaV1, ID: validKey, Campaign: "billing-2026-01",
		Recipient: Recipient{Email: "jane@example.com", Phone: "+821012345678", PushToken: "tok-abcdef123456", TZ: "Asia/Seoul"},
		Channels:  []Channel{ChannelEmail, ChannelSMS},
		Policy: Policy{ID: "billing", Version: 3, AttemptsPerChannel: 4,
			Backoff: Backoff{Initial: Duration(2 * time.Second), Multiplier: 3, Max: Duration(5 * time.Minute)}},
		Blackout: []Window{{From: 22 * 60, To: 6 * 60}},
	}
	if !r.NotBefore.Equal(nb) || !r.ExpiresAt.Equal(exp) {
		t.Errorf("times: not_before %v, expires_at %v", r.NotBefore, r.ExpiresAt)
	}
	var content map[string]any
	if err := json.Unmarshal(r.Content, &content); err != nil || content["template"] != "statement" {
		t.Errorf("content = %s (%v)", r.Content, err)
	}
	got := *r
	got.NotBefore, got.ExpiresAt, got.Content = nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode =\n%+v\nwant\n%+v", got, want)
	}
}

// TestDecodeDefaults: fields the producer leaves out get the documented
// policy defaults, and the optional parts stay empty.
func TestDecodeDefaults(t *testing.T) {
	t.Parallel()
	m := map[string]any{
		"schema": SchemaV1, "id": "n-1", "campaign": "c",
		"recipient": map[string]any{"phone": "+15550100"},
		"channels":  []any{"sms"}, "content": map[string]any{},
	}
	for _, policy := range []any{nil, map[string]any{}, map[string]any{"backoff": map[string]any{}}} {
		if policy != nil {
			m["policy"] = policy
		}
		r, err := Decode(nil, encode(t, m))
		if err != nil {
			t.Fatalf("policy %v: %v", policy, err)
		}
		want := Policy{AttemptsPerChannel: 3, Backoff: Backoff{
			Initial: Duration(time.Second), Multiplier: 2, Max: Duration(10 * time.Minute)}}
		if r.Policy != want {
			t.Errorf("policy %v: got %+v, want %+v", policy, r.Policy, want)
		}
		if r.Blackout != nil || r.NotBefore != nil || r.ExpiresAt != nil || r.Recipient.TZ != "" {
			t.Errorf("optional fields not empty: %+v", r)
		}
	}
	// A producer's partial policy keeps what it set.
	m["policy"] = map[string]any{"attempts_per_channel": 1, "backoff": map[string]any{"max": "30s"}}
	r, err := Decode(nil, encode(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if r.Policy.AttemptsPerChannel != 1 || r.Policy.Backoff.Max.D() != 30*time.Second || r.Policy.Backoff.Initial.D() != time.Second {
		t.Errorf("partial policy: %+v", r.Policy)
	}
}

// TestDecodeUnknownFieldsTolerated: producers may move ahead of the
// dispatcher, at every level of the request.
func TestDecodeUnknownFieldsTolerated(t *testing.T) {
	t.Parallel()
	m := validRequest()
	m["priority"] = "high"
	m["trace"] = map[string]any{"span": 1}
	sub(m, "recipient")["locale"] = "ko-KR"
	sub(m, "policy")["jitter"] = "10%"
	sub(sub(m, "policy"), "backoff")["kind"] = "exponential"
	m["blackout"] = []any{map[string]any{"from": "22:00", "to": "06:00", "days": []any{"sat"}}}
	if _, err := Decode([]byte(validKey), encode(t, m)); err != nil {
		t.Fatal(err)
	}
}

// problem is an expected problem: its field and words of its message.
type problem struct{ field, msg string }

// TestDecodeProblems has one row per rule of the contract: each invalid
// request yields exactly the listed problems, each naming its field.
func TestDecodeProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		key    string // "" means the request's own id; "-" means no key
		change func(m map[string]any)
		want   []problem
	}{
		{"schema missing", "", func(m map[string]any) { delete(m, "schema") },
			[]problem{{"schema", `required: "herald.dispatch.v1"`}}},
		{"schema other version", "", func(m map[string]any) { m["schema"] = "herald.dispatch.v2" },
			[]problem{{"schema", `want "herald.dispatch.v1", got "herald.dispatch.v2"`}}},
		{"id missing", "-", func(m map[string]any) { delete(m, "id") },
			[]problem{{"id", "required"}}},
		{"id too long", "-", func(m map[string]any) { m["id"] = strings.Repeat("x", MaxIDLength+1) },
			[]problem{{"id", "longer than 256 bytes"}}},
		{"id at the limit", "-", func(m map[string]any) { m["id"] = strings.Repeat("x", MaxIDLength) }, nil},
		{"key differs from id", "other-key", func(m map[string]any) {},
			[]problem{{"key", `Kafka key "other-key" differs from id "2026-01:user-123:bill"`}}},
		{"empty key differs from id", "empty", func(m map[string]any) {},
			[]problem{{"key", `Kafka key "" differs`}}},
		{"campaign missing", "", func(m map[string]any) { delete(m, "campaign") },
			[]problem{{"campaign", "required"}}},
		{"id with NUL", "-", func(m map[string]any) { m["id"] = "user-1\x00bill" },
			[]problem{{"id", "must not contain control characters: U+0000 at byte 6"}}},
		{"id with newline", "-", func(m map[string]any) { m["id"] = "user-1\nbill" },
			[]problem{{"id", "must not contain control characters: U+000A at byte 6"}}},
		{"id with C1 control", "-", func(m map[string]any) { m["id"] = "é\u0085" },
			[]problem{{"id", "U+0085 at byte 2"}}},
		{"id with NUL as key too", "same", func(m map[string]any) { m["id"] = "a\x00" },
			[]problem{{"id", "U+0000 at byte 1"}}},
		{"campaign with NUL", "", func(m map[string]any) { m["campaign"] = "billing\x00" },
			[]problem{{"campaign", "must not contain control characters: U+0000 at byte 7"}}},
		{"campaign with tab", "", func(m map[string]any) { m["campaign"] = "billing\t2026" },
			[]problem{{"campaign", "U+0009 at byte 7"}}},
		{"policy id with NUL", "", func(m map[string]any) { sub(m, "policy")["id"] = "\x00" },
			[]problem{{"policy.id", "U+0000 at byte 0"}}},
		{"id with unicode text", "-", func(m map[string]any) { m["id"] = "사용자-123:청구서" }, nil},
		{"channels missing", "", func(m map[string]any) { delete(m, "channels") },
			[]problem{{"channels", "must list at least one channel"}}},
		{"channels empty", "", func(m map[string]any) { m["channels"] = []any{} },
			[]problem{{"channels", "must list at least one channel"}}},
		{"channel unknown", "", func(m map[string]any) { m["channels"] = []any{"email", "fax"} },
			[]problem{{"channels[1]", `unknown channel "fax" (want email, sms or push)`}}},
		{"channel listed twice", "", func(m map[string]any) { m["channels"] = []any{"sms", "email", "sms"} },
			[]problem{{"channels[2]", `channel "sms" listed twice`}}},
		{"channel without address", "", func(m map[string]any) { delete(sub(m, "recipient"), "phone") },
			[]problem{{"recipient.phone", `required by channel "sms"`}}},
		{"push without token", "", func(m map[string]any) {
			delete(sub(m, "recipient"), "push_token")
			m["channels"] = []any{"push"}
		}, []problem{{"recipient.push_token", `required by channel "push"`}}},
		{"email not an address", "", func(m map[string]any) { sub(m, "recipient")["email"] = "jane.example.com" },
			[]problem{{"recipient.email", "not an email address"}}},
		{"tz unknown", "", func(m map[string]any) { sub(m, "recipient")["tz"] = "Mars/Olympus" },
			[]problem{{"recipient.tz", `unknown time zone "Mars/Olympus"`}}},
		{"tz Local (the machine's zone)", "", func(m map[string]any) { sub(m, "recipient")["tz"] = "Local" },
			[]problem{{"recipient.tz", `unknown time zone "Local"`}}},
		{"tz path", "", func(m map[string]any) { sub(m, "recipient")["tz"] = "../../etc/passwd" },
			[]problem{{"recipient.tz", "unknown time zone"}}},
		{"tz UTC", "", func(m map[string]any) { sub(m, "recipient")["tz"] = "UTC" }, nil},
		{"content missing", "", func(m map[string]any) { delete(m, "content") },
			[]problem{{"content", "required: a JSON object"}}},
		{"content null", "", func(m map[string]any) { m["content"] = nil },
			[]problem{{"content", "required: a JSON object"}}},
		{"content a string", "", func(m map[string]any) { m["content"] = "hello" },
			[]problem{{"content", `must be a JSON object, got "hello"`}}},
		{"content a list", "", func(m map[string]any) { m["content"] = []any{1} },
			[]problem{{"content", "must be a JSON object, got a list"}}},
		{"attempts_per_channel negative", "", func(m map[string]any) { sub(m, "policy")["attempts_per_channel"] = -1 },
			[]problem{{"policy.attempts_per_channel", "must be between 1 and 100, got -1"}}},
		{"attempts_per_channel too many", "", func(m map[string]any) { sub(m, "policy")["attempts_per_channel"] = 101 },
			[]problem{{"policy.attempts_per_channel", "must be between 1 and 100, got 101"}}},
		{"policy version negative", "", func(m map[string]any) { sub(m, "policy")["version"] = -2 },
			[]problem{{"policy.version", "must not be negative"}}},
		{"backoff initial negative", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["initial"] = "-1s" },
			[]problem{{"policy.backoff.initial", "must be positive"}}},
		{"backoff multiplier below 1", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["multiplier"] = 0.5 },
			[]problem{{"policy.backoff.multiplier", "must be between 1 and 100, got 0.5"}}},
		{"backoff multiplier too big", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["multiplier"] = 1000 },
			[]problem{{"policy.backoff.multiplier", "must be between 1 and 100, got 1000"}}},
		{"backoff max below initial", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["max"] = "1s" },
			[]problem{{"policy.backoff.max", "must not be less than initial (2s), got 1s"}}},
		{"backoff initial not a duration", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["initial"] = "1 sec" },
			[]problem{{"policy.backoff.initial", `want a duration such as "1s" or "10m", got "1 sec"`}}},
		{"backoff max a number", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["max"] = 600 },
			[]problem{{"policy.backoff.max", "want a duration such as \"1s\" or \"10m\", got the number 600"}}},
		{"blackout from equals to", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "22:00", "to": "06:00"}, map[string]any{"from": "12:00", "to": "12:00"}}
		}, []problem{{"blackout[1]", "from and to are both 12:00"}}},
		{"blackout whole day 00:00-24:00", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "00:00", "to": "24:00"}}
		}, []problem{{"blackout[0]", "neither empty nor the whole day"}}},
		{"blackout 24:00 as end", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "20:00", "to": "24:00"}}
		}, nil},
		{"blackout bad HH:MM", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "22:00", "to": "6am"}}
		}, []problem{{"blackout[0].to", `want a time of day "HH:MM" (00:00 to 23:59, or 24:00 as an end), got "6am"`}}},
		{"blackout hour out of range", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "25:00", "to": "06:00"}}
		}, []problem{{"blackout[0].from", `got "25:00"`}}},
		{"blackout minute out of range", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "22:60", "to": "06:00"}}
		}, []problem{{"blackout[0].from", `got "22:60"`}}},
		{"blackout sign in clock", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "+1:00", "to": "06:00"}}
		}, []problem{{"blackout[0].from", `got "+1:00"`}}},
		{"blackout window without to", "", func(m map[string]any) {
			m["blackout"] = []any{map[string]any{"from": "22:00"}}
		}, []problem{{"blackout[0].to", "required: a time of day"}}},
		{"blackout window not an object", "", func(m map[string]any) { m["blackout"] = []any{"22:00-06:00"} },
			[]problem{{"blackout[0]", `want a window {"from":"HH:MM","to":"HH:MM"}, got "22:00-06:00"`}}},
		{"blackout index kept after a bad window", "", func(m map[string]any) {
			m["blackout"] = []any{"x", map[string]any{"from": "01:00", "to": "01:00"}}
		}, []problem{{"blackout[0]", "want a window"}, {"blackout[1]", "from and to are both 01:00"}}},
		{"not_before not RFC 3339", "", func(m map[string]any) { m["not_before"] = "2026-01-31 09:00" },
			[]problem{{"not_before", `want an RFC 3339 time such as "2026-01-31T09:00:00Z", got "2026-01-31 09:00"`}}},
		{"expires_at not RFC 3339", "", func(m map[string]any) { m["expires_at"] = "tomorrow" },
			[]problem{{"expires_at", `got "tomorrow"`}}},
		{"expires_at without zone", "", func(m map[string]any) { m["expires_at"] = "2026-02-15T00:00:00" },
			[]problem{{"expires_at", "want an RFC 3339 time"}}},
		{"expires_at before not_before", "", func(m map[string]any) { m["expires_at"] = "2026-01-31T08:59:59Z" },
			[]problem{{"expires_at", "must be after not_before (2026-01-31T09:00:00Z), got 2026-01-31T08:59:59Z"}}},
		{"expires_at equal to not_before", "", func(m map[string]any) { m["expires_at"] = "2026-01-31T18:00:00+09:00" },
			[]problem{{"expires_at", "must be after not_before"}}},

		// JSON type errors name the field and say what was wanted.
		{"channels a number", "", func(m map[string]any) { m["channels"] = 3 },
			[]problem{{"channels", `want a list of channels such as ["email","sms"], got the number 3`}}},
		{"channels a string", "", func(m map[string]any) { m["channels"] = "email" },
			[]problem{{"channels", `want a list of channels such as ["email","sms"], got "email"`}}},
		{"channel a number", "", func(m map[string]any) { m["channels"] = []any{"email", 2} },
			[]problem{{"channels[1]", "want a channel name (email, sms or push), got the number 2"}}},
		{"channel null", "", func(m map[string]any) { m["channels"] = []any{nil} },
			[]problem{{"channels[0]", "want a channel name (email, sms or push), got null"}}},
		{"id a number", "-", func(m map[string]any) { m["id"] = 123 },
			[]problem{{"id", "want a string, got the number 123"}}},
		{"recipient a string", "", func(m map[string]any) { m["recipient"] = "jane@example.com" },
			[]problem{{"recipient", `want an object, got "jane@example.com"`}}},
		{"phone a number", "", func(m map[string]any) { sub(m, "recipient")["phone"] = 821012345678 },
			[]problem{{"recipient.phone", "want a string, got the number 821012345678"}}},
		{"tz a number", "", func(m map[string]any) { sub(m, "recipient")["tz"] = 9 },
			[]problem{{"recipient.tz", `want an IANA zone name such as "Asia/Seoul", got the number 9`}}},
		{"policy a list", "", func(m map[string]any) { m["policy"] = []any{} },
			[]problem{{"policy", "want an object, got a list"}}},
		{"attempts a fraction", "", func(m map[string]any) { sub(m, "policy")["attempts_per_channel"] = 1.5 },
			[]problem{{"policy.attempts_per_channel", "want a whole number, got the number 1.5"}}},
		{"attempts a string", "", func(m map[string]any) { sub(m, "policy")["attempts_per_channel"] = "3" },
			[]problem{{"policy.attempts_per_channel", `want a whole number, got "3"`}}},
		{"multiplier a bool", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["multiplier"] = true },
			[]problem{{"policy.backoff.multiplier", "want a number, got true"}}},
		{"blackout an object", "", func(m map[string]any) { m["blackout"] = map[string]any{"from": "22:00", "to": "06:00"} },
			[]problem{{"blackout", "want a list of windows"}}},
		{"version out of range", "", func(m map[string]any) { sub(m, "policy")["version"] = json.Number("99999999999999999999") },
			[]problem{{"policy.version", "out of range: 99999999999999999999"}}},
		{"multiplier out of range", "", func(m map[string]any) { sub(sub(m, "policy"), "backoff")["multiplier"] = json.Number("1e400") },
			[]problem{{"policy.backoff.multiplier", "out of range: 1e400"}}},
		{"not_before a number", "", func(m map[string]any) { m["not_before"] = 1769850000 },
			[]problem{{"not_before", "want an RFC 3339 time such as \"2026-01-31T09:00:00Z\", got the number 1769850000"}}},

		// Null means absent.
		{"optional fields null", "", func(m map[string]any) {
			m["blackout"], m["not_before"], m["expires_at"], m["policy"] = nil, nil, nil, nil
			sub(m, "recipient")["tz"] = nil
		}, nil},
		{"id null", "-", func(m map[string]any) { m["id"] = nil }, []problem{{"id", "required"}}},

		// Several problems at once are all reported, in field order.
		{"several problems", "", func(m map[string]any) {
			m["schema"] = "v0"
			delete(m, "campaign")
			m["channels"] = []any{"email", "fax", "email"}
			delete(sub(m, "recipient"), "email")
			sub(m, "recipient")["tz"] = "Nowhere/Land"
			m["content"] = 7
			sub(m, "policy")["attempts_per_channel"] = 0.5
			sub(sub(m, "policy"), "backoff")["max"] = "soon"
			m["blackout"] = []any{map[string]any{"from": "09:00", "to": "09:00"}, map[string]any{"from": "9:00", "to": "10:00"}}
			m["not_before"] = "now"
		}, []problem{
			{"policy.attempts_per_channel", "want a whole number"},
			{"policy.backoff.max", "want a duration"},
			{"blackout[1].from", `got "9:00"`},
			{"not_before", "want an RFC 3339 time"},
			{"schema", `got "v0"`},
			{"campaign", "required"},
			{"recipient.email", `required by channel "email"`},
			{"channels[1]", `unknown channel "fax"`},
			{"channels[2]", `channel "email" listed twice`},
			{"recipient.tz", "unknown time zone"},
			{"content", "must be a JSON object, got the number 7"},
			{"blackout[0]", "from and to are both 09:00"},
		}},
		// A field with a type problem gets that one message, not a second
		// one from validation.
		{"one message per field", "-", func(m map[string]any) {
			m["id"] = false
			m["channels"] = 1
			sub(m, "recipient")["phone"] = 1
		}, []problem{
			{"id", "want a string, got false"},
			{"recipient.phone", "want a string"},
			{"channels", "want a list of channels"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validRequest()
			tt.change(m)
			var key []byte
			switch tt.key {
			case "":
				key = []byte(validKey)
			case "-":
			case "empty":
				key = []byte{}
			case "same":
				key = []byte(m["id"].(string))
			default:
				key = []byte(tt.key)
			}
			r, err := Decode(key, encode(t, m))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if r != nil {
				t.Errorf("Decode returned a request with an error")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			if errors.Is(err, ErrMalformed) {
				t.Errorf("a validation error is not malformed")
			}
			if len(ve.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(ve.Problems), len(tt.want), ve)
			}
			for i, w := range tt.want {
				p := ve.Problems[i]
				if p.Field != w.field || !strings.Contains(p.Message, w.msg) {
					t.Errorf("problem %d = %q, want field %q with %q", i, p, w.field, w.msg)
				}
			}
			if !strings.HasPrefix(err.Error(), "invalid request: "+ve.Problems[0].String()) {
				t.Errorf("Error() = %q", err)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, `   `, `null`, `[]`, `[{"id":"x"}]`, `"x"`, `42`, `true`,
		`{`, `{"id":`, `{"id":"x",}`, `{"id":"x"} trailing`, `{"id":"x"}{"id":"y"}`, `{'id':'x'}`,
		"\xff\xfe{", `{"id":"x"`, `<xml/>`,
	} {
		r, err := Decode([]byte("x"), []byte(in))
		if r != nil || !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "malformed record: ") {
			t.Errorf("Decode(%q) = %v, %v; want ErrMalformed", in, r, err)
			continue
		}
		if Reason(err) != ReasonMalformed {
			t.Errorf("Reason(%v) = %q", err, Reason(err))
		}
	}
	for in, want := range map[string]string{
		``:               "malformed record: empty, want a JSON object",
		`[{"id":"x"}]`:   `malformed record: not a JSON object: starts with "[{\"id\":\"x\"}]"`,
		"\xef\xbb\xbf{}": `malformed record: not a JSON object: starts with "\ufeff{}"`,
		`{"id":"x",}`:    "malformed record: invalid character '}' looking for beginning of object key string",
	} {
		if _, err := Decode(nil, []byte(in)); err == nil || err.Error() != want {
			t.Errorf("Decode(%q) = %v, want %s", in, err, want)
		}
	}
	// JSON whitespace around the object is fine.
	if _, err := Decode([]byte(validKey), append(append([]byte("\n\t "), encode(t, validRequest())...), "\r\n"...)); err != nil {
		t.Errorf("whitespace around the object: %v", err)
	}
}

func TestReason(t *testing.T) {
	t.Parallel()
	mismatch := &ValidationError{Problems: []FieldError{{"campaign", "required"}, {"key", "differs"}}}
	tests := []struct {
		err  error
		want string
	}{
		{ErrMalformed, ReasonMalformed},
		{errors.Join(errors.New("x"), ErrMalformed), ReasonMalformed},
		{&ValidationError{Problems: []FieldError{{"campaign", "required"}}}, ReasonInvalid},
		{mismatch, ReasonKeyMismatch},
		{errors.New("something else"), ReasonInvalid},
	}
	for _, tt := range tests {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if !errors.Is(mismatch, ErrKeyMismatch) || errors.Is(tests[2].err, ErrKeyMismatch) {
		t.Error("errors.Is(err, ErrKeyMismatch) should follow the key problem")
	}
	// Through Decode, as the dispatcher sees it.
	_, err := Decode([]byte("k"), encode(t, validRequest()))
	if Reason(err) != ReasonKeyMismatch {
		t.Errorf("Reason(key mismatch) = %q (%v)", Reason(err), err)
	}
	m := validRequest()
	delete(m, "campaign")
	if _, err := Decode([]byte(validKey), encode(t, m)); Reason(err) != ReasonInvalid {
		t.Errorf("Reason(invalid) = %q", Reason(err))
	}
}

// TestValidateDoesNotPanic: Validate is exported and may see requests that
// did not come through Decode.
func TestValidateDoesNotPanic(t *testing.T) {
	t.Parallel()
	for _, r := range []*Request{
		{},
		{Content: json.RawMessage("  ")},
		{Content: json.RawMessage("\n{}"), Channels: []Channel{""}},
	} {
		if err := r.Validate(nil); err == nil {
			t.Errorf("Validate(%+v) = nil", r)
		}
	}
}

func TestParseClock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Clock
		ok   bool
	}{
		{"00:00", 0, true}, {"06:30", 390, true}, {"23:59", 1439, true}, {"24:00", 0, true},
		{"24:01", 0, false}, {"25:00", 0, false}, {"12:60", 0, false}, {"1:00", 0, false},
		{"01:0", 0, false}, {"+1:00", 0, false}, {" 1:00", 0, false}, {"-1:00", 0, false},
		{"01:-1", 0, false}, {"0100", 0, false}, {"01:000", 0, false}, {"", 0, false}, {"aa:bb", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseClock(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseClock(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseWindow(t *testing.T) {
	t.Parallel()
	w, err := ParseWindow("22:00-06:00")
	if err != nil || w != (Window{From: 1320, To: 360}) || w.String() != "22:00-06:00" {
		t.Errorf("ParseWindow = %v, %v", w, err)
	}
	for _, bad := range []string{"22:00", "22:00-22:00", "22-06", "22:00-6:00", "x-06:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
	}
}

// TestRequestJSONRoundTrip: the JSON a decoded request marshals to is a
// valid request that decodes to the same thing (the changelog keeps it).
func TestRequestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	r, err := Decode([]byte(validKey), encode(t, validRequest()))
	if err != nil {
		t.Fatal(err)
	}
	b := encode(t, r)
	r2, err := Decode([]byte(validKey), b)
	if err != nil {
		t.Fatalf("re-decode %s: %v", b, err)
	}
	if b2 := encode(t, r2); string(b2) != string(b) {
		t.Errorf("round trip changed the request:\n%s\n%s", b, b2)
	}
	var tree map[string]any
	_ = json.Unmarshal(b, &tree)
	keys := slices.Sorted(maps.Keys(tree))
	want := "blackout campaign channels content expires_at id not_before policy recipient schema"
	if strings.Join(keys, " ") != want {
		t.Errorf("request JSON fields = %v, want %s", keys, want)
	}
}

// A request over MaxRequestBytes is refused as too large, whatever it
// holds, so that its state always fits the changelog.
func TestDecodeRefusesOversizedRequests(t *testing.T) {
	t.Parallel()
	m := map[string]any{"schema": SchemaV1, "id": "big", "campaign": "c", "recipient": map[string]any{"email": "a@example.com"},
		"channels": []string{"email"}, "content": map[string]any{"text": strings.Repeat("x", MaxRequestBytes)}}
	b, _ := json.Marshal(m)
	_, err := Decode([]byte("big"), b)
	if !errors.Is(err, ErrTooLarge) || Reason(err) != ReasonTooLarge {
		t.Fatalf("Decode of %d bytes: %v (reason %q), want too large", len(b), err, Reason(err))
	}
	m["content"] = map[string]any{"text": strings.Repeat("x", MaxRequestBytes-1024)}
	b, _ = json.Marshal(m)
	if _, err := Decode([]byte("big"), b); err != nil {
		t.Fatalf("a request just under the limit: %v", err)
	}
}

// The largest state Herald can write (a request at the limit and a full
// history of errors at their limit) fits Kafka's default 1 MiB message.
func TestLargestStateFitsTheChangelog(t *testing.T) {
	t.Parallel()
	m := map[string]any{"schema": SchemaV1, "id": strings.Repeat("i", MaxIDLength), "campaign": "c",
		"recipient": map[string]any{"email": "a@example.com"}, "channels": []string{"email"},
		"content": map[string]any{"text": strings.Repeat("<", MaxRequestBytes-2048)}}
	var in strings.Builder
	ie := json.NewEncoder(&in)
	ie.SetEscapeHTML(false)
	if err := ie.Encode(m); err != nil {
		t.Fatal(err)
	}
	r, err := Decode(nil, []byte(in.String()))
	if err != nil {
		t.Fatal(err)
	}
	s := State{ID: r.ID, Request: r}
	for i := 0; i < MaxHistory; i++ {
		s.History = append(s.History, Attempt{Attempt: i, Channel: ChannelEmail, Outcome: OutcomeTransient, Error: strings.Repeat("e", MaxErrorLength+3)})
	}
	enc, err := EncodeState(&s) // as the table's codec writes it
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) >= 1<<20 {
		t.Fatalf("largest state is %d bytes, over 1 MiB", len(enc))
	}
	// And so did it in the JSON of earlier releases, which are still read.
	if old := legacyJSON(t, &s); len(old) >= 1<<20 {
		t.Fatalf("largest state was %d bytes of JSON, over 1 MiB", len(old))
	}
}
