package main

import (
	"context"
	"errors"
	"io"
)

// errNoSealing is resealCmd's answer until the core seals envelopes.
var errNoSealing = errors.New("reseal: this build of hybridsession does not seal sessions yet; nothing to reseal")

// resealCmd is "hsctl reseal": after a key rotation it will rewrite every
// session still sealed with a retired key under the current one, with
// progress output. It needs the core's sealing API, which this build does
// not have yet, so it reports that and exits with status 1.
func resealCmd(context.Context, []string, io.Writer, io.Writer) error {
	return errNoSealing
}
