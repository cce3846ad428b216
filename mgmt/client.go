package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Client calls the management API; `switchboard ctl` uses it.
type Client struct {
	// Addr is host:port of the management listener.
	Addr  string
	Token string
	HTTP  *http.Client
}

// APIError is a refusal or failure the API answered: the HTTP status and
// the server's message.
type APIError struct {
	Command string
	Status  int
	Msg     string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %d: %s", e.Command, e.Status, e.Msg)
}

// Call runs command name with args (marshalled to JSON; nil for none) and
// returns the raw "result" value. Commands go as POST with a JSON body,
// which every command accepts; "help" (or "") reads the list of commands.
// An answer other than 200 is an *APIError.
func (c *Client) Call(ctx context.Context, name string, args any) (json.RawMessage, error) {
	var body []byte
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		body = b
	}
	url := "http://" + c.Addr + "/api/v1/" + name
	method := http.MethodPost
	if name == "" || name == "help" {
		url, method, body = "http://"+c.Addr+"/api/v1", http.MethodGet, nil
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("management API at %s: %w (is the server running with mgmt.listen set?)", c.Addr, err)
	}
	defer resp.Body.Close()
	var out struct {
		Result json.RawMessage `json:"result"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("management API at %s answered %s with a body that is not JSON", c.Addr, resp.Status)
	}
	if resp.StatusCode != http.StatusOK || out.Error != "" {
		msg := out.Error
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return nil, &APIError{Command: name, Status: resp.StatusCode, Msg: msg}
	}
	return out.Result, nil
}
