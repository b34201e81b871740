package client

import (
	"context"

	"github.com/sigil-dev/sigil/api"
)

// PolicyWhatIf asks the workload's server what the candidate policy set
// files (*.cedar contents by base name) would revoke, changing nothing.
// The server answers only identities in its policy.operators.
func (w *Workload) PolicyWhatIf(ctx context.Context, files map[string]string) (*api.WhatIf, error) {
	var out api.WhatIf
	if err := post(ctx, w.HTTPClient(), w.url(api.PathPolicyWhatIf), api.WhatIfRequest{Files: files}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
