// Built by e2e/receiving_test.go into one program together with the Go
// snippets of docs/receiving.md, each written to its own file of package
// main. Reads a JSON array of cases on stdin, runs each through a snippet
// and prints a JSON array of {"result": ...} or {"error": "..."}.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
)

type harnessCase struct {
	Fn      string      `json:"fn"`
	Header  http.Header `json:"header"`
	BodyB64 string      `json:"body_b64"`
	Secret  string      `json:"secret"`
	Secrets []string    `json:"secrets"`
	KeyB64  string      `json:"key_b64"`
	Scheme  string      `json:"scheme"`
	Prefix  string      `json:"prefix"`
	Fail    bool        `json:"fail"` // handler: the processing fails
}

type harnessResult struct {
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

// harnessHandler is one receiver, kept across cases so that its
// deduplication shows.
type harnessHandler struct {
	h         http.Handler
	fail      bool
	processed []string
}

func main() {
	var cases []harnessCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	handlers := map[string]*harnessHandler{}
	out := make([]harnessResult, len(cases))
	for i, c := range cases {
		res, err := harnessRun(c, handlers)
		if err != nil {
			out[i].Error = err.Error()
		} else {
			out[i].Result = res
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func harnessRun(c harnessCase, handlers map[string]*harnessHandler) (any, error) {
	body, err := base64.StdEncoding.DecodeString(c.BodyB64)
	if err != nil {
		return nil, err
	}
	switch c.Fn {
	case "verify":
		return verify(c.Header, body, c.Scheme, c.Prefix, c.Secrets...), nil
	case "decrypt":
		plain, err := decrypt(c.Header, body, c.KeyB64, c.Prefix)
		if err != nil {
			return nil, err
		}
		if !json.Valid(plain) {
			return nil, fmt.Errorf("decrypted body is not JSON: %q", plain)
		}
		return json.RawMessage(plain), nil
	case "handler":
		hh := handlers[c.Secret+" "+c.KeyB64]
		if hh == nil {
			var key []byte
			if c.KeyB64 != "" {
				if key, err = base64.StdEncoding.DecodeString(c.KeyB64); err != nil {
					return nil, err
				}
			}
			hh = &harnessHandler{}
			hh.h = receiver(c.Secret, key, func(event json.RawMessage) error {
				if hh.fail {
					return errors.New("processing failed")
				}
				var e struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(event, &e)
				hh.processed = append(hh.processed, e.ID)
				return nil
			})
			handlers[c.Secret+" "+c.KeyB64] = hh
		}
		hh.fail, hh.processed = c.Fail, nil
		req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
		req.Header = c.Header.Clone()
		rec := httptest.NewRecorder()
		hh.h.ServeHTTP(rec, req)
		return map[string]any{"status": rec.Code, "processed": append([]string{}, hh.processed...)}, nil
	}
	return nil, fmt.Errorf("unknown fn %q", c.Fn)
}
