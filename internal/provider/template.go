package provider

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/herald-dispatch/herald/contract"
)

// A template provider speaks any vendor's HTTP API, as a file describes
// it (YAML, or JSON, which is YAML too): --provider CHANNEL=template:PATH.
// The format is documented in docs/sending.md ("Templates"), and
// deploy/providers/ holds worked examples that vendors_test.go checks
// against fakes of the vendors' documented APIs.
//
// The file is read and checked once, at start-up: a mistake (an unknown
// key, a template that does not parse or names an unknown field or
// secret, a bad outcome) stops start-up with an error naming the file and
// the line. Secrets come from the environment or from files (a file is
// read again when it changes, for tokens that a sidecar refreshes), never
// from the template's own text; their values are replaced by xxxxx in
// every error and result, and no request is ever logged.
//
// A template provider keeps the webhook's exactly-once rules: the
// command's cut-off bounds the hand-over (handover.go); the request's body
// cannot be rewound, so net/http never sends it twice (a request with a
// GetBody and an Idempotency-Key header is one it replays on a reused
// connection that fails); a failure after the request was written is
// unknown (the dispatcher issues the same attempt again, on the same
// provider: chain.go); before it, transient, and a definite failure for a
// failover chain.

// Template is a provider configured by a template file.
type Template struct {
	name    string
	file    string
	secrets map[string]*secretSource
	method  string
	url     *template.Template
	headers []namedTemplate
	auth    *authSpec
	body    bodyRenderer
	ctype   string
	idemKey string // header carrying the idempotency key; empty: none
	tsFmt   string
	answer  answerRules
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
}

// Name is the template's name: (its file's base name if none).
func (t *Template) Name() string { return t.name }

// TemplateData is what a template's fields render from.
type TemplateData struct {
	ID, Campaign, Channel, Address, IdempotencyKey string
	Attempt                                        int
	// Content is the request's content, decoded.
	Content map[string]any
	// Timestamp is the request's time, in the format request.timestamp
	// names (unix seconds by default).
	Timestamp string
	// Method, URL, Path (with the query) and Body are the rendered
	// request's, for the HMAC message only.
	Method, URL, Path, Body string
}

// templateFile is a template file as written.
type templateFile struct {
	Name    string                `yaml:"name"`
	Secrets map[string]secretSpec `yaml:"secrets"`
	Request requestFile           `yaml:"request"`
	Answer  answerFile            `yaml:"answer"`
}

type requestFile struct {
	Method            tstr      `yaml:"method"`
	URL               tstr      `yaml:"url"`
	Headers           rawNode   `yaml:"headers"`
	Auth              *authFile `yaml:"auth"`
	JSON              rawNode   `yaml:"json"`
	Form              rawNode   `yaml:"form"`
	IdempotencyHeader string    `yaml:"idempotency_header"`
	Timestamp         tstr      `yaml:"timestamp"`
}

type answerFile struct {
	MessageID  tstr       `yaml:"message_id"`
	Error      tstr       `yaml:"error"`
	RetryAfter tstr       `yaml:"retry_after"`
	Rules      []ruleFile `yaml:"rules"`
}

// rawNode keeps a part of the file as its YAML node (decoding into a
// yaml.Node field directly trips KnownFields).
type rawNode struct{ n *yaml.Node }

func (r *rawNode) UnmarshalYAML(n *yaml.Node) error {
	r.n = n
	return nil
}

// tstr is a string that remembers its line.
type tstr struct {
	s    string
	line int
}

func (t *tstr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a string", n.Line)
	}
	t.s, t.line = n.Value, n.Line
	return nil
}

type secretSpec struct {
	Env string `yaml:"env"`
	// File may name environment variables ($VAR, ${VAR}).
	File string `yaml:"file"`
	line int
}

func (s *secretSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain secretSpec
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = secretSpec(p)
	s.line = n.Line
	return nil
}

type authFile struct {
	Basic *struct {
		Username tstr `yaml:"username"`
		Password tstr `yaml:"password"`
	} `yaml:"basic"`
	Bearer *tstr     `yaml:"bearer"`
	HMAC   *hmacFile `yaml:"hmac"`
	line   int
}

type hmacFile struct {
	Key         tstr `yaml:"key"`
	KeyEncoding tstr `yaml:"key_encoding"`
	Algorithm   tstr `yaml:"algorithm"`
	Message     tstr `yaml:"message"`
	Header      tstr `yaml:"header"`
	Prefix      tstr `yaml:"prefix"`
	Encoding    tstr `yaml:"encoding"`
}

func (a *authFile) UnmarshalYAML(n *yaml.Node) error {
	type plain authFile
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*a = authFile(p)
	a.line = n.Line
	return nil
}

type ruleFile struct {
	Status   statusList `yaml:"status"`
	Field    string     `yaml:"field"`
	Equals   []string   `yaml:"equals"`
	Outcome  tstr       `yaml:"outcome"`
	Failover bool       `yaml:"failover"`
	line     int
}

func (r *ruleFile) UnmarshalYAML(n *yaml.Node) error {
	type plain ruleFile
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*r = ruleFile(p)
	r.line = n.Line
	return nil
}

// statusList is a list of statuses: 201, or a class such as "5xx".
type statusList struct{ codes []int } // a class c00 is stored as -c

func (s *statusList) UnmarshalYAML(n *yaml.Node) error {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	for _, it := range items {
		v := strings.ToLower(strings.TrimSpace(it.Value))
		if len(v) == 3 && v[1:] == "xx" && v[0] >= '1' && v[0] <= '5' {
			s.codes = append(s.codes, -int(v[0]-'0'))
			continue
		}
		c, err := strconv.Atoi(v)
		if err != nil || c < 100 || c > 599 {
			return fmt.Errorf("line %d: status %q: want a code (201) or a class (5xx)", it.Line, it.Value)
		}
		s.codes = append(s.codes, c)
	}
	return nil
}

func (s statusList) match(code int) bool {
	if len(s.codes) == 0 {
		return true
	}
	for _, c := range s.codes {
		if c == code || (c < 0 && code/100 == -c) {
			return true
		}
	}
	return false
}

type namedTemplate struct {
	name string
	t    *template.Template
}

type authSpec struct {
	user, pass, bearer *template.Template
	hmac               *hmacSpec
}

type hmacSpec struct {
	key, message  *template.Template
	keyEncoding   string
	newHash       func() hash.Hash
	header        string
	prefix        string
	outputEncoder func([]byte) string
}

type answerRules struct {
	messageID, errField, retryAfter string
	rules                           []rule
}

type rule struct {
	status   statusList
	field    string
	equals   []string
	outcome  contract.Outcome
	failover bool
}

// secretSource is a secret's value: from the environment, read at start,
// or from a file, read again whenever its size or modification time
// changes.
type secretSource struct {
	file string

	mu      sync.Mutex
	value   string
	size    int64
	modTime time.Time
}

func (s *secretSource) get() (string, error) {
	if s.file == "" {
		return s.value, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.file)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	if fi.Size() != s.size || !fi.ModTime().Equal(s.modTime) || s.value == "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return "", fmt.Errorf("secret file: %w", err)
		}
		s.value, s.size, s.modTime = strings.TrimSpace(string(b)), fi.Size(), fi.ModTime()
	}
	return s.value, nil
}

// OpenTemplate reads and checks a template file and builds its provider.
func OpenTemplate(path string, o Options) (*Template, error) {
	o = o.withDefaults()
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	t, err := parseTemplate(path, raw)
	if err != nil {
		return nil, err
	}
	t.timeout = o.Timeout
	t.client = httpClient(o)
	return t, nil
}

var yamlLine = regexp.MustCompile(`(?:^|\b)line (\d+): `)

// parseTemplate checks a template file's text; errors name path and line.
// It decodes the file, then builds the Template part by part, in the
// file's order: secrets first (every template may read them), then the
// request (method and URL, headers, auth, body, timestamp format) and the
// answer's rules.
func parseTemplate(path string, raw []byte) (*Template, error) {
	f, err := decodeTemplateFile(path, raw)
	if err != nil {
		return nil, err
	}
	p := &templateParser{path: path, t: &Template{name: f.Name, file: path, secrets: map[string]*secretSource{}, now: time.Now}}
	if p.t.name == "" {
		base := path[strings.LastIndexAny(path, `/\`)+1:]
		p.t.name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml"), ".json")
	}
	for _, step := range []func() error{
		func() error { return p.secrets(f.Secrets) },
		func() error { return p.target(&f.Request) },
		func() error { return p.headers(&f.Request) },
		func() error { return p.auth(f.Request.Auth) },
		func() error { return p.body(&f.Request) },
		func() error { return p.timestamp(&f.Request) },
		func() error { return p.answer(&f.Answer) },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return p.t, nil
}

// decodeTemplateFile decodes a template file strictly (an unknown field is
// an error); errors name path and line.
func decodeTemplateFile(path string, raw []byte) (*templateFile, error) {
	var f templateFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("template %s: empty", path)
		}
		// yaml's messages carry "line N: "; name the file there instead.
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "\n  ", "; ")
		return nil, fmt.Errorf("template %s", yamlLine.ReplaceAllString(msg, path+":$1: "))
	}
	return &f, nil
}

// templateParser builds a Template from its decoded file, one part at a
// time; its errors name the file and the line.
type templateParser struct {
	path string
	t    *Template
}

func (p *templateParser) fail(line int, format string, args ...any) error {
	return fmt.Errorf("template %s:%d: %s", p.path, line, fmt.Sprintf(format, args...))
}

// parse compiles one Go template of the file and runs it once on a sample
// command, which finds unknown fields and secrets.
func (p *templateParser) parse(what string, s tstr) (*template.Template, error) {
	tt, err := template.New(what).Funcs(p.t.funcs()).Option("missingkey=error").Parse(s.s)
	if err != nil {
		return nil, p.fail(s.line, "%s: %v", what, strings.TrimPrefix(err.Error(), "template: "))
	}
	if err := tt.Funcs(p.t.funcs()).Option("missingkey=zero").Execute(io.Discard, sampleData()); err != nil {
		return nil, p.fail(s.line, "%s: %v", what, strings.TrimPrefix(err.Error(), "template: "))
	}
	return tt.Option("missingkey=error"), nil
}

// secrets reads each secret once, from its environment variable or its
// file: one that is not there is an error now, not at the first send.
func (p *templateParser) secrets(specs map[string]secretSpec) error {
	for name, s := range specs {
		switch {
		case (s.Env == "") == (s.File == ""):
			return p.fail(s.line, "secret %s: give exactly one of env: and file:", name)
		case s.Env != "":
			v, ok := os.LookupEnv(s.Env)
			if !ok || strings.TrimSpace(v) == "" {
				return p.fail(s.line, "secret %s: the environment variable %s is not set", name, s.Env)
			}
			p.t.secrets[name] = &secretSource{value: strings.TrimSpace(v)}
		default:
			src := &secretSource{file: os.ExpandEnv(s.File)}
			if src.file == "" {
				return p.fail(s.line, "secret %s: file %q names no file (is its variable set?)", name, s.File)
			}
			if _, err := src.get(); err != nil {
				return p.fail(s.line, "secret %s: %v", name, err)
			}
			p.t.secrets[name] = src
		}
	}
	return nil
}

// target checks the request's method (default POST) and URL, which must
// render, for a sample command, to an http or https URL with a host.
func (p *templateParser) target(r *requestFile) error {
	t := p.t
	t.method = strings.ToUpper(strings.TrimSpace(r.Method.s))
	if t.method == "" {
		t.method = http.MethodPost
	}
	if !slices.Contains([]string{"POST", "PUT", "PATCH", "GET", "DELETE"}, t.method) {
		return p.fail(r.Method.line, "method %q: want POST, PUT, PATCH, GET or DELETE", r.Method.s)
	}
	if r.URL.s == "" {
		return fmt.Errorf("template %s: request.url is required", p.path)
	}
	var err error
	if t.url, err = p.parse("url", r.URL); err != nil {
		return err
	}
	var sample strings.Builder
	t.url.Option("missingkey=zero").Execute(&sample, sampleData())
	if u, err := url.Parse(sample.String()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return p.fail(r.URL.line, "url: want an http:// or https:// URL")
	}
	t.url.Option("missingkey=error")
	return nil
}

// headers compiles the request's headers, in the file's order; an
// Authorization header is auth:'s alone.
func (p *templateParser) headers(r *requestFile) error {
	h := r.Headers.n
	if h == nil {
		return nil
	}
	if h.Kind != yaml.MappingNode {
		return p.fail(h.Line, "headers: want a mapping of Name: value")
	}
	for i := 0; i+1 < len(h.Content); i += 2 {
		k, v := h.Content[i], h.Content[i+1]
		tt, err := p.parse("header "+k.Value, tstr{v.Value, v.Line})
		if err != nil {
			return err
		}
		if strings.EqualFold(k.Value, "Authorization") && r.Auth != nil {
			return p.fail(k.Line, "headers: Authorization is set by auth:")
		}
		p.t.headers = append(p.t.headers, namedTemplate{http.CanonicalHeaderKey(k.Value), tt})
	}
	return nil
}

// auth compiles the one authentication a template may have: basic,
// bearer or an HMAC signature.
func (p *templateParser) auth(a *authFile) error {
	if a == nil {
		return nil
	}
	n := 0
	p.t.auth = &authSpec{}
	var err error
	if a.Basic != nil {
		n++
		if p.t.auth.user, err = p.parse("auth.basic.username", a.Basic.Username); err != nil {
			return err
		}
		if p.t.auth.pass, err = p.parse("auth.basic.password", a.Basic.Password); err != nil {
			return err
		}
	}
	if a.Bearer != nil {
		n++
		if p.t.auth.bearer, err = p.parse("auth.bearer", *a.Bearer); err != nil {
			return err
		}
	}
	if a.HMAC != nil {
		n++
		if p.t.auth.hmac, err = p.hmac(a.HMAC, a.line); err != nil {
			return err
		}
	}
	if n != 1 {
		return p.fail(a.line, "auth: give one of basic:, bearer: and hmac:")
	}
	return nil
}

// hmac compiles an HMAC signature: key and message templates, the
// algorithm, the key's and the output's encodings, and the header that
// carries it (line is auth:'s, for a missing header).
func (p *templateParser) hmac(h *hmacFile, line int) (*hmacSpec, error) {
	hs := &hmacSpec{keyEncoding: h.KeyEncoding.s, header: h.Header.s, prefix: h.Prefix.s}
	var err error
	if hs.key, err = p.parse("auth.hmac.key", h.Key); err != nil {
		return nil, err
	}
	if hs.message, err = p.parse("auth.hmac.message", h.Message); err != nil {
		return nil, err
	}
	switch strings.ToLower(h.Algorithm.s) {
	case "", "sha256":
		hs.newHash = sha256.New
	case "sha1":
		hs.newHash = sha1.New
	case "sha512":
		hs.newHash = sha512.New
	default:
		return nil, p.fail(h.Algorithm.line, "auth.hmac.algorithm %q: want sha256, sha1 or sha512", h.Algorithm.s)
	}
	switch h.KeyEncoding.s {
	case "", "raw", "base64", "hex":
	default:
		return nil, p.fail(h.KeyEncoding.line, "auth.hmac.key_encoding %q: want raw, base64 or hex", h.KeyEncoding.s)
	}
	switch h.Encoding.s {
	case "", "base64":
		hs.outputEncoder = base64.StdEncoding.EncodeToString
	case "hex":
		hs.outputEncoder = hex.EncodeToString
	default:
		return nil, p.fail(h.Encoding.line, "auth.hmac.encoding %q: want base64 or hex", h.Encoding.s)
	}
	if hs.header == "" {
		return nil, p.fail(line, "auth.hmac.header: the header to carry the signature is required")
	}
	return hs, nil
}

// body compiles the request's body: a JSON document or a form, or none.
func (p *templateParser) body(r *requestFile) error {
	switch {
	case r.JSON.n != nil && r.Form.n != nil:
		return p.fail(r.Form.n.Line, "request: give json: or form:, not both")
	case r.JSON.n != nil:
		jb, err := compileJSON(r.JSON.n, p.parse)
		if err != nil {
			return err
		}
		p.t.body, p.t.ctype = jb, "application/json"
	case r.Form.n != nil:
		fb, err := compileForm(r.Form.n, p.parse, p.fail)
		if err != nil {
			return err
		}
		p.t.body, p.t.ctype = fb, "application/x-www-form-urlencoded"
	}
	return nil
}

// timestamp takes the idempotency header and the format of .Timestamp.
func (p *templateParser) timestamp(r *requestFile) error {
	p.t.idemKey = r.IdempotencyHeader
	switch ts := r.Timestamp.s; ts {
	case "", "unix", "unix_ms", "rfc3339":
		p.t.tsFmt = ts
	default:
		return p.fail(r.Timestamp.line, "request.timestamp %q: want unix, unix_ms or rfc3339", ts)
	}
	return nil
}

// answer checks how an answer is read: its message id, error and
// Retry-After (default the header), and the rules that classify it.
func (p *templateParser) answer(a *answerFile) error {
	p.t.answer = answerRules{messageID: a.MessageID.s, errField: a.Error.s, retryAfter: a.RetryAfter.s}
	if p.t.answer.retryAfter == "" {
		p.t.answer.retryAfter = "header:Retry-After"
	}
	for _, r := range a.Rules {
		o := contract.Outcome(r.Outcome.s)
		switch o {
		case contract.OutcomeSuccess, contract.OutcomeTransient, contract.OutcomeThrottled, contract.OutcomePermanent:
		default:
			return p.fail(r.line, "rule: outcome %q: want success, transient, throttled or permanent", r.Outcome.s)
		}
		if r.Failover && o == contract.OutcomeSuccess {
			return p.fail(r.line, "rule: failover: a success does not fail over")
		}
		if len(r.Equals) > 0 && r.Field == "" {
			return p.fail(r.line, "rule: equals: needs field:")
		}
		p.t.answer.rules = append(p.t.answer.rules, rule{r.Status, r.Field, r.Equals, o, r.Failover})
	}
	return nil
}

func sampleData() *TemplateData {
	return &TemplateData{ID: "sample", Campaign: "sample", Channel: "sms", Address: "+15005550006",
		IdempotencyKey: "sample", Attempt: 1, Content: map[string]any{}, Timestamp: "0",
		Method: "POST", URL: "https://example.com/", Path: "/", Body: "{}"}
}

// funcs are the template functions; secret reads a secret (an error names
// an unknown one).
func (t *Template) funcs() template.FuncMap {
	return template.FuncMap{
		"secret": func(name string) (string, error) {
			s, ok := t.secrets[name]
			if !ok {
				return "", fmt.Errorf("no secret %q in the template's secrets section", name)
			}
			return s.get()
		},
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"default": func(def string, v any) string {
			if v == nil || v == "" {
				return def
			}
			return fmt.Sprint(v)
		},
	}
}

// bodyRenderer renders a request body.
type bodyRenderer interface {
	render(exec func(*template.Template) (string, error)) ([]byte, error)
}

// jsonNode is a compiled json: tree: an object, an array, a literal, a
// template rendered to a JSON string, or (tag !json) a template whose
// output is inserted as JSON.
type jsonNode struct {
	keys    []string
	fields  []*jsonNode
	items   []*jsonNode
	isObj   bool
	isArr   bool
	literal json.RawMessage
	tmpl    *template.Template
	raw     bool
	line    int
}

func compileJSON(n *yaml.Node, parse func(string, tstr) (*template.Template, error)) (*jsonNode, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return compileJSON(n.Alias, parse)
	case yaml.MappingNode:
		j := &jsonNode{isObj: true, line: n.Line}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c, err := compileJSON(n.Content[i+1], parse)
			if err != nil {
				return nil, err
			}
			j.keys, j.fields = append(j.keys, n.Content[i].Value), append(j.fields, c)
		}
		return j, nil
	case yaml.SequenceNode:
		j := &jsonNode{isArr: true, line: n.Line}
		for _, it := range n.Content {
			c, err := compileJSON(it, parse)
			if err != nil {
				return nil, err
			}
			j.items = append(j.items, c)
		}
		return j, nil
	}
	switch n.Tag {
	case "!!str", "!json":
		tt, err := parse("json field", tstr{n.Value, n.Line})
		if err != nil {
			return nil, err
		}
		return &jsonNode{tmpl: tt, raw: n.Tag == "!json", line: n.Line}, nil
	case "!!int", "!!float", "!!bool", "!!null":
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		b, _ := json.Marshal(v)
		return &jsonNode{literal: b, line: n.Line}, nil
	}
	return nil, fmt.Errorf("line %d: json: unsupported value (tag %s)", n.Line, n.Tag)
}

func (j *jsonNode) render(exec func(*template.Template) (string, error)) ([]byte, error) {
	var b bytes.Buffer
	if err := j.write(&b, exec); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (j *jsonNode) write(b *bytes.Buffer, exec func(*template.Template) (string, error)) error {
	switch {
	case j.isObj:
		b.WriteByte('{')
		for i, k := range j.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			if err := j.fields[i].write(b, exec); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case j.isArr:
		b.WriteByte('[')
		for i, it := range j.items {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := it.write(b, exec); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case j.tmpl != nil:
		s, err := exec(j.tmpl)
		if err != nil {
			return err
		}
		if j.raw {
			if !json.Valid([]byte(s)) {
				return fmt.Errorf("line %d: !json field rendered invalid JSON", j.line)
			}
			b.WriteString(s)
			return nil
		}
		sb, _ := json.Marshal(s)
		b.Write(sb)
	default:
		b.Write(j.literal)
	}
	return nil
}

// formBody is a compiled form: (field order kept; empty values left out).
type formBody []namedTemplate

func compileForm(n *yaml.Node, parse func(string, tstr) (*template.Template, error), fail func(int, string, ...any) error) (formBody, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fail(n.Line, "form: want a mapping of field: value")
	}
	var f formBody
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return nil, fail(v.Line, "form field %s: want a value", k.Value)
		}
		tt, err := parse("form field "+k.Value, tstr{v.Value, v.Line})
		if err != nil {
			return nil, err
		}
		f = append(f, namedTemplate{k.Value, tt})
	}
	return f, nil
}

func (f formBody) render(exec func(*template.Template) (string, error)) ([]byte, error) {
	var b strings.Builder
	for _, fld := range f {
		v, err := exec(fld.t)
		if err != nil {
			return nil, err
		}
		if v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(fld.name) + "=" + url.QueryEscape(v))
	}
	return []byte(b.String()), nil
}

// build renders the request of one command under ctx. Its body cannot be
// rewound (no GetBody): net/http never sends it twice.
func (t *Template) build(ctx context.Context, cmd *contract.SendCommand) (*http.Request, error) {
	data, err := t.data(cmd)
	if err != nil {
		return nil, err
	}
	exec := func(tt *template.Template) (string, error) {
		var b strings.Builder
		if err := tt.Execute(&b, data); err != nil {
			return "", fmt.Errorf("render %w", err)
		}
		return b.String(), nil
	}
	u, err := exec(t.url)
	if err != nil {
		return nil, err
	}
	var body []byte
	if t.body != nil {
		if body, err = t.body.render(exec); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, t.method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("url: %w", unwrapURLError(err))
	}
	if body != nil {
		// Not bytes.NewReader: that would give the request a GetBody, and
		// net/http replays such a request (with an Idempotency-Key, even a
		// POST) when a reused connection fails after it was written.
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		req.Header.Set("Content-Type", t.ctype)
	}
	for _, h := range t.headers {
		v, err := exec(h.t)
		if err != nil {
			return nil, err
		}
		req.Header.Set(h.name, v)
	}
	if t.idemKey != "" {
		req.Header.Set(t.idemKey, data.IdempotencyKey)
	}
	if t.auth != nil {
		if t.auth.hmac != nil { // the HMAC message alone sees the rendered request
			data.Method, data.URL, data.Path, data.Body = t.method, u, req.URL.RequestURI(), string(body)
		}
		if err := t.auth.authorize(req, exec); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// data is what the templates see of cmd: its fields, its content decoded,
// the idempotency key (the id when the command has none) and the time in
// the template's format.
func (t *Template) data(cmd *contract.SendCommand) (*TemplateData, error) {
	data := &TemplateData{ID: cmd.ID, Campaign: cmd.Campaign, Channel: string(cmd.Channel), Address: cmd.Address,
		IdempotencyKey: cmd.IdempotencyKey, Attempt: cmd.Attempt, Content: map[string]any{}}
	if data.IdempotencyKey == "" {
		data.IdempotencyKey = cmd.ID
	}
	if len(cmd.Content) > 0 {
		if err := json.Unmarshal(cmd.Content, &data.Content); err != nil {
			return nil, fmt.Errorf("content: %w", err)
		}
	}
	now := t.now()
	switch t.tsFmt {
	case "unix_ms":
		data.Timestamp = strconv.FormatInt(now.UnixMilli(), 10)
	case "rfc3339":
		data.Timestamp = now.UTC().Format(time.RFC3339)
	default:
		data.Timestamp = strconv.FormatInt(now.Unix(), 10)
	}
	return data, nil
}

// authorize sets req's authentication: basic, bearer or an HMAC signature
// in its header.
func (a *authSpec) authorize(req *http.Request, exec func(*template.Template) (string, error)) error {
	switch {
	case a.user != nil:
		user, err1 := exec(a.user)
		pass, err2 := exec(a.pass)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		req.SetBasicAuth(user, pass)
	case a.bearer != nil:
		tok, err := exec(a.bearer)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case a.hmac != nil:
		sig, err := a.hmac.sign(exec)
		if err != nil {
			return err
		}
		req.Header.Set(a.hmac.header, sig)
	}
	return nil
}

func (h *hmacSpec) sign(exec func(*template.Template) (string, error)) (string, error) {
	k, err := exec(h.key)
	if err != nil {
		return "", err
	}
	key := []byte(k)
	switch h.keyEncoding {
	case "base64":
		key, err = base64.StdEncoding.DecodeString(k)
	case "hex":
		key, err = hex.DecodeString(k)
	}
	if err != nil {
		return "", fmt.Errorf("auth.hmac.key: %s-decode failed", h.keyEncoding)
	}
	msg, err := exec(h.message)
	if err != nil {
		return "", err
	}
	mac := hmac.New(h.newHash, key)
	mac.Write([]byte(msg))
	return h.prefix + h.outputEncoder(mac.Sum(nil)), nil
}

// hide replaces the value of every secret in s.
func (t *Template) hide(s string) string {
	for _, src := range t.secrets {
		if v, err := src.get(); err == nil && len(v) >= 3 {
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	return s
}

// Send makes one attempt.
func (t *Template) Send(ctx context.Context, cmd *contract.SendCommand) Result {
	start := t.now()
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	ctx, h := handOverBy(ctx, cmd.Until())
	defer h.release()
	req, err := t.build(ctx, cmd)
	res := func(o Result) Result {
		o.Provider = t.name
		if o.Err != nil {
			o.Err = errors.New(t.hide(o.Err.Error()))
		}
		return o
	}
	if err != nil {
		// The command's content does not fit the template, or a secret
		// file is unreadable: nothing was sent.
		return res(Permanent(0, fmt.Errorf("%s: %w", t.name, err)))
	}
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
				h.handedOver()
			}
		},
	}))
	resp, err := t.client.Do(req)
	if err != nil {
		if h.cutOff() && !wrote.Load() {
			return res(notHandedOver(t.name, t.now().Sub(start)))
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", t.timeout)
		} else {
			err = unwrapURLError(err)
		}
		if wrote.Load() {
			return res(Unknown(fmt.Errorf("%s: request sent, %w", t.name, err)))
		}
		out := Transient(0, fmt.Errorf("%s: %w", t.name, err))
		out.Failover = ctx.Err() == nil // nothing reached the provider
		return res(out)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return res(t.classify(resp, body))
}

// classify reads an answer by the template's rules, then the defaults
// (Classify).
func (t *Template) classify(resp *http.Response, body []byte) Result {
	var doc any
	if len(bytes.TrimSpace(body)) > 0 {
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if d.Decode(&doc) != nil {
			doc = nil
		}
	}
	r := Classify(resp.StatusCode)
	for _, ru := range t.answer.rules {
		if !ru.status.match(resp.StatusCode) {
			continue
		}
		if ru.field != "" {
			vals := lookup(doc, resp.Header, ru.field)
			if len(vals) == 0 || (len(ru.equals) > 0 && !slices.ContainsFunc(vals, func(v string) bool { return slices.Contains(ru.equals, v) })) {
				continue
			}
		}
		r = Result{Outcome: ru.outcome, Code: resp.StatusCode, Failover: ru.failover}
		break
	}
	if r.Outcome == contract.OutcomeSuccess {
		if v := lookup(doc, resp.Header, t.answer.messageID); t.answer.messageID != "" && len(v) > 0 {
			r.MessageID = v[0]
		}
		return r
	}
	r.RetryAfter = t.retryAfter(doc, resp.Header)
	msg := ""
	if v := lookup(doc, resp.Header, t.answer.errField); t.answer.errField != "" && len(v) > 0 {
		msg = strings.Join(v, "; ")
	} else {
		msg = strings.TrimSpace(string(body[:min(len(body), 256)]))
	}
	if msg != "" {
		r.Err = fmt.Errorf("%s: HTTP %d: %s", t.name, resp.StatusCode, msg)
	} else {
		r.Err = fmt.Errorf("%s: HTTP %d", t.name, resp.StatusCode)
	}
	return r
}

func (t *Template) retryAfter(doc any, h http.Header) time.Duration {
	v := lookup(doc, h, t.answer.retryAfter)
	if len(v) == 0 {
		return 0
	}
	if strings.HasPrefix(t.answer.retryAfter, "header:") {
		return ParseRetryAfter(v[0], t.now())
	}
	f, err := strconv.ParseFloat(v[0], 64)
	if err != nil || f <= 0 {
		return 0
	}
	return time.Duration(min(f, 7*24*3600) * float64(time.Second))
}

// lookup reads a path of the answer: "header:Name", or a dotted path into
// the JSON body where a number indexes an array and * takes every element.
// Values come back as text (numbers as written).
func lookup(doc any, h http.Header, path string) []string {
	if path == "" {
		return nil
	}
	if name, ok := strings.CutPrefix(path, "header:"); ok {
		if v := h.Get(name); v != "" {
			return []string{v}
		}
		return nil
	}
	cur := []any{doc}
	for _, part := range strings.Split(path, ".") {
		var next []any
		for _, c := range cur {
			switch v := c.(type) {
			case map[string]any:
				if x, ok := v[part]; ok {
					next = append(next, x)
				}
			case []any:
				if part == "*" {
					next = append(next, v...)
				} else if i, err := strconv.Atoi(part); err == nil && i >= 0 && i < len(v) {
					next = append(next, v[i])
				}
			}
		}
		cur = next
	}
	var out []string
	for _, c := range cur {
		switch v := c.(type) {
		case nil:
		case string:
			out = append(out, v)
		case json.Number:
			out = append(out, v.String())
		case bool:
			out = append(out, strconv.FormatBool(v))
		default:
			b, _ := json.Marshal(v)
			out = append(out, string(b))
		}
	}
	return out
}

// Close closes idle connections.
func (t *Template) Close() error {
	t.client.CloseIdleConnections()
	return nil
}
