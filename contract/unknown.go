package contract

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
)

// UnknownFields lists the fields of a request's JSON that v1 does not
// define, by path ("sendAt", "recipient.mail", "blackout[1].form"), in
// sorted order. Decode ignores them (producers may move ahead of the
// dispatcher); the API reports them back as warnings, so that a mistyped
// field (sendAt for not_before) is not silently ignored. Field names match
// as encoding/json matches them (case-insensitively). content is the
// producer's own and never reported. A value that is not JSON has no
// unknown fields (Decode reports it).
func UnknownFields(raw []byte) []string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []string
	walkUnknown(v, reflect.TypeFor[Request](), "", &out)
	sort.Strings(out)
	return out
}

var (
	fieldsMu    sync.Mutex
	fieldsCache = map[reflect.Type]map[string]reflect.Type{}
)

// jsonFields maps a struct's JSON field names, lower-cased, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fieldsMu.Lock()
	defer fieldsMu.Unlock()
	if m, ok := fieldsCache[t]; ok {
		return m
	}
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[strings.ToLower(name)] = f.Type
	}
	fieldsCache[t] = m
	return m
}

var rawType = reflect.TypeFor[json.RawMessage]()
var timeType = reflect.TypeFor[time.Time]()

func walkUnknown(v any, t reflect.Type, path string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawType || t == timeType {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return // a type error, Decode's to report
		}
		fields := jsonFields(t)
		for k, val := range obj {
			ft, ok := fields[strings.ToLower(k)]
			p := k
			if path != "" {
				p = path + "." + k
			}
			if !ok {
				*out = append(*out, p)
				continue
			}
			walkUnknown(val, ft, p, out)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			walkUnknown(e, t.Elem(), path+"["+itoa(i)+"]", out)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
