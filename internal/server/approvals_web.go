package server

import (
	"context"
	"strings"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/web"
)

// approvalPages wires the approval pages (internal/web) to the approval
// service and the one pipeline: what a page shows is previewed by the
// pipeline's approval.decide, and every decision is the pipeline's,
// recorded, through the service.
func (s *Server) approvalPages() web.ApprovalPages {
	return web.ApprovalPages{
		Service: s.approvals.svc,
		Preview: func(who approval.Approver, r *approval.Request, approve bool) policy.Decision {
			return s.acc.pipeline.PreviewApproval(who, r, approve)
		},
		Authorize: func(ctx context.Context, who approval.Approver, r *approval.Request, approve bool) error {
			_, err := s.acc.pipeline.DecideApproval(ctx, who, r, approve)
			return err
		},
		Groups: s.approvals.groups,
	}
}

// approvalLink is the approval page of request id, as webhook messages
// link to it.
func approvalLink(publicURL string, id approval.ID) string {
	return strings.TrimSuffix(publicURL, "/") + "/approvals/" + string(id)
}
