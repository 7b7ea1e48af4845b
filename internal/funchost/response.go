package funchost

// Response is the invocation result returned to the host.
type Response struct {
	// Outputs holds output binding values by binding name (e.g. "res").
	Outputs map[string]any `json:"Outputs"`
	// Logs appear in the function's invocation log (Application Insights).
	Logs []string `json:"Logs"`
	// ReturnValue feeds a "$return" output binding.
	ReturnValue any `json:"ReturnValue"`
}

// HTTPResponse is the value of an HTTP output binding such as "res".
type HTTPResponse struct {
	StatusCode int               `json:"statusCode"`
	Body       string            `json:"body"`
	Headers    map[string]string `json:"headers,omitempty"`
}

// normalize makes a response encode as {"Outputs":{},"Logs":[],…} rather
// than with nulls.
func (r *Response) normalize() *Response {
	if r == nil {
		r = &Response{}
	}
	if r.Outputs == nil {
		r.Outputs = map[string]any{}
	}
	if r.Logs == nil {
		r.Logs = []string{}
	}
	return r
}
