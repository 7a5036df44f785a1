package views

import (
	"encoding/json"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Message is the API's answer about one notification: the dispatcher's
// state as the view holds it, without the bookkeeping fields (applied
// offsets), and with the recipient's addresses masked unless revealed.
type Message struct {
	ID       string          `json:"id"`
	Campaign string          `json:"campaign"`
	Status   contract.Status `json:"status"`
	// Final is true once the status can never change again.
	Final    bool               `json:"final"`
	Channel  contract.Channel   `json:"channel"`
	Channels []contract.Channel `json:"channels,omitempty"`
	// Attempts counts provider attempts on all channels; ChannelAttempts
	// those on the current channel that used up the policy's allowance.
	Attempts        int `json:"attempts"`
	ChannelAttempts int `json:"channel_attempts"`
	Duplicates      int `json:"duplicates"`
	// NextAttemptAt and HoldReason say when and why a held notification
	// goes on: schedule, blackout, backoff or rate_limit.
	NextAttemptAt *time.Time          `json:"next_attempt_at,omitempty"`
	HoldReason    contract.HoldReason `json:"hold_reason,omitempty"`
	LastError     string              `json:"last_error,omitempty"`
	FirstSeen     time.Time           `json:"first_seen"`
	UpdatedAt     time.Time           `json:"updated_at"`
	SentAt        *time.Time          `json:"sent_at,omitempty"`
	// Version grows by one with every change of the state.
	Version   uint64             `json:"version"`
	Recipient contract.Recipient `json:"recipient"`
	Policy    *contract.Policy   `json:"policy,omitempty"`
	Blackout  []contract.Window  `json:"blackout,omitempty"`
	NotBefore *time.Time         `json:"not_before,omitempty"`
	ExpiresAt *time.Time         `json:"expires_at,omitempty"`
	History   []contract.Attempt `json:"history"`
	// Content is the request's content, only with reveal (it is the
	// recipient's data as much as the address is).
	Content json.RawMessage `json:"content,omitempty"`
	// Masked is true when addresses are masked.
	Masked bool `json:"masked"`
	// Remembered is true for an id that is only remembered: its state
	// ended more than --state-retention ago and was replaced by its
	// status, last change and version (contract.State.Remembered).
	Remembered bool `json:"remembered,omitempty"`
	// Note says what was removed: a final notification's content and
	// addresses (NoteShed), or everything but the status (NoteRemembered).
	Note string `json:"note,omitempty"`
}

// The notes of a message whose details were removed.
const (
	NoteShed       = "the content and the recipient's addresses were removed when the notification became final"
	NoteRemembered = "only remembered: the notification ended and its details (request, recipient, content, history) were removed after the state retention (--state-retention); the id stays known, and a request with it is a duplicate, until the dedup retention (--dedup-retention) ends"
)

// NewMessage builds the answer for s. Unless reveal is set, the addresses
// are masked everywhere they appear, including inside provider errors
// (an SMTP 550 often quotes the mailbox), and the content is left out.
func NewMessage(s *contract.State, reveal bool) Message {
	m := Message{
		ID: s.ID, Campaign: s.Campaign, Status: s.Status, Final: s.Status.Final(),
		Channel: s.Channel, Attempts: s.Attempts, ChannelAttempts: s.ChannelAttempts,
		Duplicates: s.Duplicates, NextAttemptAt: s.NextAttemptAt, HoldReason: s.HoldReason,
		LastError: s.LastError, FirstSeen: s.FirstSeen, UpdatedAt: s.UpdatedAt, SentAt: s.SentAt,
		Version: s.Version, History: append([]contract.Attempt{}, s.History...), Masked: !reveal,
	}
	if r := s.Request; r != nil {
		m.Channels = r.Channels
		m.Recipient = r.Recipient
		p := r.Policy
		m.Policy = &p
		m.Blackout = r.Blackout
		m.NotBefore = r.NotBefore
		m.ExpiresAt = r.ExpiresAt
		if reveal {
			m.Content = r.Content
		}
	}
	switch {
	case s.Remembered:
		m.Remembered, m.Note = true, NoteRemembered
	case s.Status.Final() && s.Request != nil && !s.HasPayload():
		m.Note = NoteShed
	}
	if !reveal {
		mask := m.Recipient.TextMasker()
		m.Recipient = m.Recipient.Masked()
		m.LastError = mask(m.LastError)
		for i := range m.History {
			m.History[i].Error = mask(m.History[i].Error)
		}
	}
	return m
}
