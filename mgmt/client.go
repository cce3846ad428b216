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

// Call runs command name with args (marshalled to JSON; nil for none) and
// returns the raw "result" value.
func (c *Client) Call(ctx context.Context, name string, args any) (json.RawMessage, error) {
	var body io.Reader
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	url := "http://" + c.Addr + "/api/v1/" + name
	if name == "" || name == "help" {
		url = "http://" + c.Addr + "/api/v1"
	}
	method := http.MethodPost
	if body == nil {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if body != nil {
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
	if out.Error != "" {
		return nil, fmt.Errorf("%s: %s", name, out.Error)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", name, resp.Status)
	}
	return out.Result, nil
}
