package contract

import (
	"slices"
	"testing"
)

func TestUnknownFields(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, json string
		want       []string
	}{
		{"none", `{"schema":"herald.dispatch.v1","id":"a","campaign":"c","recipient":{"email":"a@b.c","tz":"UTC"},
			"channels":["email"],"content":{"anything":{"goes":1}},"policy":{"backoff":{"initial":"1s"}},
			"blackout":[{"from":"22:00","to":"06:00"}],"not_before":"2026-01-01T00:00:00Z"}`, nil},
		{"case-insensitive like encoding/json", `{"ID":"a","Recipient":{"EMAIL":"x"}}`, nil},
		{"top level", `{"id":"a","sendAt":"2026-01-01T00:00:00Z"}`, []string{"sendAt"}},
		{"nested", `{"recipient":{"mail":"x"},"policy":{"retries":3,"backoff":{"jitter":0.1}}}`,
			[]string{"policy.backoff.jitter", "policy.retries", "recipient.mail"}},
		{"in a list", `{"blackout":[{"from":"22:00","to":"06:00"},{"form":"01:00","to":"02:00"}]}`, []string{"blackout[1].form"}},
		{"not json", `{"id":`, nil},
		{"wrong types are Decode's", `{"recipient":"x","blackout":{"a":1}}`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := UnknownFields([]byte(c.json)); !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
