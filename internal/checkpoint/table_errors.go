package checkpoint

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// tableError is a failed table operation. Its message is one line, names
// the operation and the service's status and error code, and is scrubbed of
// secrets; Unwrap gives the SDK error (an *azcore.ResponseError for service
// errors) for errors.As and errors.Is.
type tableError struct {
	op  string
	msg string
	err error
}

func (e *tableError) Error() string { return "checkpoint: " + e.op + ": " + e.msg }
func (e *tableError) Unwrap() error { return e.err }

// Patterns scrubbed from any error text, whatever the configured secrets.
var (
	sigRE     = regexp.MustCompile(`(?i)(sig=)[^&\s"';]+`)
	accKeyRE  = regexp.MustCompile(`(?i)(AccountKey=)[^;\s"']+`)
	codeRE    = regexp.MustCompile(`"code"\s*:\s*"([A-Za-z]+)"`)
	sharedKey = regexp.MustCompile(`(?i)(SharedKey(?:Lite)? [^:\s]+:)[A-Za-z0-9+/=]+`)
)

// wrap turns an SDK error into a tableError; context errors and our own
// sentinel errors pass through errors.Is unchanged.
func (t *Table) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &tableError{op: op, msg: t.describe(err), err: err}
}

// describe renders err without secrets: service errors as status and error
// code, transport errors without the URL's query string.
func (t *Table) describe(err error) string {
	var msg string
	var re *azcore.ResponseError
	var ue *url.Error
	switch {
	case errors.As(err, &re):
		code := re.ErrorCode
		if code == "" {
			code = innerErrorCode(re)
		}
		if code == "" {
			code = "no error code"
		}
		msg = fmt.Sprintf("table service answered %d %s (%s)", re.StatusCode, http.StatusText(re.StatusCode), code)
		if re.RawResponse != nil && re.RawResponse.Request != nil {
			r := re.RawResponse.Request
			msg += " to " + r.Method + " " + r.URL.Scheme + "://" + r.URL.Host + r.URL.EscapedPath()
		}
	case errors.As(err, &ue):
		target := "request"
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.Fragment, u.User = "", "", nil
			target = u.String()
		}
		msg = fmt.Sprintf("%s %s: %v", ue.Op, target, ue.Err)
	default:
		msg = err.Error()
	}
	return t.scrub(msg)
}

// scrub removes configured secrets and anything that looks like one.
func (t *Table) scrub(s string) string {
	for _, sec := range t.secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	s = sigRE.ReplaceAllString(s, "${1}[REDACTED]")
	s = accKeyRE.ReplaceAllString(s, "${1}[REDACTED]")
	s = sharedKey.ReplaceAllString(s, "${1}[REDACTED]")
	return s
}

// innerErrorCode digs the error code out of a failed transaction, whose
// outer response is 202 with the failing operation's error inside a
// multipart body.
func innerErrorCode(re *azcore.ResponseError) string {
	if re.RawResponse == nil {
		return ""
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil {
		return ""
	}
	if m := codeRE.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return ""
}

// errorCode returns the service error code of err, looking inside
// transaction responses, or "".
func errorCode(err error) string {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return ""
	}
	if re.ErrorCode != "" {
		return re.ErrorCode
	}
	return innerErrorCode(re)
}

// isNotFound reports whether err says the entity (not the table) is missing.
func isNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound &&
		re.ErrorCode != string(aztables.TableNotFound)
}
