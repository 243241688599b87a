package policy

import (
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

// cedarInput is a Request in Cedar form: the request and the entities it
// names. It implements types.EntityGetter without a map: a request names
// at most a handful of entities.
type cedarInput struct {
	req       types.Request
	principal types.Entity
	resource  types.Entity
	server    types.Entity
	hasServer bool
}

// Get implements types.EntityGetter.
func (in *cedarInput) Get(uid types.EntityUID) (types.Entity, bool) {
	switch {
	case uid == in.principal.UID:
		return in.principal, true
	case uid == in.resource.UID:
		return in.resource, true
	case in.hasServer && uid == in.server.UID:
		return in.server, true
	}
	return types.Entity{}, false
}

var (
	typeAgent  = types.EntityType(TypeAgent)
	typeServer = types.EntityType(TypeServer)
	typeAction = types.EntityType("Action")
	emptySet   = types.NewSet()
)

func actionUID(a string) types.EntityUID { return types.NewEntityUID(typeAction, types.String(a)) }

func strSet(ss []string) types.Set {
	if len(ss) == 0 {
		return emptySet
	}
	vs := make([]types.Value, len(ss))
	for i, s := range ss {
		vs[i] = types.String(s)
	}
	return types.NewSet(vs...)
}

func budget(p *int64) types.Long {
	if p == nil {
		return -1
	}
	return types.Long(*p)
}

func orPublic(s string) string {
	if s == "" {
		return Sensitivities[0]
	}
	return s
}

// toCedar converts a validated request. now is used when r.Time is zero.
func toCedar(r *Request, now time.Time) *cedarInput {
	in := &cedarInput{}
	principal := types.NewEntityUID(typeAgent, types.String(r.Agent.ID))
	var tags types.Record
	if len(r.Agent.Labels) > 0 {
		m := make(types.RecordMap, len(r.Agent.Labels))
		for k, v := range r.Agent.Labels {
			m[types.String(k)] = types.String(v)
		}
		tags = types.NewRecord(m)
	}
	in.principal = types.Entity{
		UID: principal,
		Attributes: types.NewRecord(types.RecordMap{
			"tier":              types.String(r.Agent.Tier),
			"tier_level":        types.Long(TierLevel(r.Agent.Tier)),
			"owner":             types.String(r.Agent.Owner),
			"sensitivity":       types.String(Sensitivities[0]),
			"sensitivity_level": types.Long(0),
			"labels":            emptySet,
		}),
		Tags: tags,
	}

	rtype := ResourceType(r.Action)
	resource := types.NewEntityUID(types.EntityType(rtype), types.String(r.Resource.ID))
	sens := orPublic(r.Resource.Sensitivity)
	attrs := types.RecordMap{
		"sensitivity":       types.String(sens),
		"sensitivity_level": types.Long(SensitivityLevel(sens)),
		"labels":            strSet(r.Resource.Labels),
	}
	if rtype == TypeAgent {
		attrs["tier"] = types.String(r.Resource.Tier)
		attrs["tier_level"] = types.Long(TierLevel(r.Resource.Tier))
		attrs["owner"] = types.String("")
	}
	in.resource = types.Entity{UID: resource, Attributes: types.NewRecord(attrs)}
	if r.Resource.Server != "" && (rtype == TypeTool || rtype == TypeFile) {
		in.hasServer = true
		in.server = types.Entity{UID: types.NewEntityUID(typeServer, types.String(r.Resource.Server))}
		in.resource.Parents = types.NewEntityUIDSet(in.server.UID)
	}

	chain := r.Task.Chain
	if len(chain) == 0 {
		chain = []string{r.Agent.ID}
	}
	chainUIDs := make([]types.Value, len(chain))
	for i, a := range chain {
		chainUIDs[i] = types.NewEntityUID(typeAgent, types.String(a))
	}
	t := r.Time
	if t.IsZero() {
		t = now
	}
	t = t.UTC()
	tsens := orPublic(r.Task.Sensitivity)
	taint := orPublic(r.Taint)
	in.req = types.Request{
		Principal: principal,
		Action:    actionUID(r.Action),
		Resource:  resource,
		Context: types.NewRecord(types.RecordMap{
			"task": types.NewRecord(types.RecordMap{
				"id":                types.String(r.Task.ID),
				"purpose":           types.String(r.Task.Purpose),
				"on_behalf_of":      types.String(r.Task.OnBehalfOf),
				"scope":             strSet(r.Task.Scope),
				"in_scope":          types.Boolean(r.Task.InScope),
				"sensitivity":       types.String(tsens),
				"sensitivity_level": types.Long(SensitivityLevel(tsens)),
				"depth":             types.Long(r.Task.Depth),
				"actions_left":      budget(r.Task.ActionsLeft),
				"writes_left":       budget(r.Task.WritesLeft),
			}),
			"delegation": types.NewRecord(types.RecordMap{
				"depth": types.Long(r.Task.Depth),
				"chain": types.NewSet(chainUIDs...),
				"root":  chainUIDs[0],
			}),
			"risk":        types.String(r.Risk),
			"high_impact": types.Boolean(r.HighImpact),
			"destination": types.NewRecord(types.RecordMap{
				"host":   types.String(r.Destination.Host),
				"method": types.String(r.Destination.Method),
				"path":   types.String(r.Destination.Path),
			}),
			"command":     types.String(r.Command),
			"taint":       types.String(taint),
			"taint_level": types.Long(SensitivityLevel(taint)),
			"time":        types.NewDatetime(t),
			"hour":        types.Long(t.Hour()),
			"weekday":     types.Long(t.Weekday()),
		}),
	}
	return in
}
