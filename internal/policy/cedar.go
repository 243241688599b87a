package policy

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

// cedarInput is a Request in Cedar form: the request and the entities it
// names. It implements types.EntityGetter without a map: a request names
// at most a handful of entities.
type cedarInput struct {
	req types.Request
	ctx types.RecordMap // the context's map, reused through inputPool
	// all is the candidate list of the common path, reused likewise.
	all       *policyList
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

// appendKey appends length-prefixed parts to k: no choice of strings
// makes two different inputs share a key.
func appendKey(k []byte, ss ...string) []byte {
	for _, s := range ss {
		k = strconv.AppendInt(k, int64(len(s)), 10)
		k = append(k, ':')
		k = append(k, s...)
	}
	return k
}

func appendNum(k []byte, n int64) []byte {
	k = strconv.AppendInt(k, n, 10)
	return append(k, ';')
}

func principalEntity(r *Request) types.Entity {
	var tags types.Record
	if len(r.Agent.Labels) > 0 {
		m := make(types.RecordMap, len(r.Agent.Labels))
		for k, v := range r.Agent.Labels {
			m[types.String(k)] = types.String(v)
		}
		tags = types.NewRecord(m)
	}
	return types.Entity{
		UID: types.NewEntityUID(typeAgent, types.String(r.Agent.ID)),
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
}

func resourceEntity(r *Request, rtype string) types.Entity {
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
	e := types.Entity{
		UID:        types.NewEntityUID(types.EntityType(rtype), types.String(r.Resource.ID)),
		Attributes: types.NewRecord(attrs),
	}
	if hasServer(r, rtype) {
		e.Parents = types.NewEntityUIDSet(types.NewEntityUID(typeServer, types.String(r.Resource.Server)))
	}
	return e
}

func hasServer(r *Request, rtype string) bool {
	return r.Resource.Server != "" && (rtype == TypeTool || rtype == TypeFile)
}

func taskRecord(r *Request) types.Record {
	tsens := orPublic(r.Task.Sensitivity)
	return types.NewRecord(types.RecordMap{
		"id":                types.String(r.Task.ID),
		"purpose":           types.String(r.Task.Purpose),
		"on_behalf_of":      types.String(r.Task.OnBehalfOf),
		"scope":             strSet(r.Task.Scope),
		"in_scope":          types.Boolean(r.Task.InScope),
		"sensitivity":       types.String(tsens),
		"sensitivity_level": types.Long(SensitivityLevel(tsens)),
		"depth":             types.Long(r.Task.Depth),
	})
}

func chainOf(r *Request) []string {
	if len(r.Task.Chain) == 0 {
		return []string{r.Agent.ID}
	}
	return r.Task.Chain
}

func delegationRecord(r *Request) types.Record {
	chain := chainOf(r)
	uids := make([]types.Value, len(chain))
	for i, a := range chain {
		uids[i] = types.NewEntityUID(typeAgent, types.String(a))
	}
	return types.NewRecord(types.RecordMap{
		"depth":     types.Long(r.Task.Depth),
		"max_depth": types.Long(r.Task.MaxDepth),
		"chain":     types.NewSet(uids...),
		"root":      uids[0],
	})
}

// The subject's parts are memoized apart, each by what it depends on, so
// that what tasks share is kept once: the principal by its agent, the
// delegation by its chain (every top-level task of an agent has the same
// one), and only the task record per task.

func principalKey(k []byte, r *Request) []byte {
	k = appendKey(k, r.Agent.ID, r.Agent.Tier, r.Agent.Owner)
	if len(r.Agent.Labels) == 0 {
		return appendNum(k, 0)
	}
	keys := make([]string, 0, len(r.Agent.Labels))
	for l := range r.Agent.Labels {
		keys = append(keys, l)
	}
	slices.Sort(keys)
	k = appendNum(k, int64(len(keys)))
	for _, l := range keys {
		k = appendKey(k, l, r.Agent.Labels[l])
	}
	return k
}

func taskKey(k []byte, r *Request) []byte {
	k = appendKey(k, r.Task.ID, r.Task.Purpose, r.Task.OnBehalfOf, strconv.FormatBool(r.Task.InScope), r.Task.Sensitivity)
	k = appendNum(k, int64(r.Task.Depth))
	k = appendNum(k, int64(len(r.Task.Scope)))
	return appendKey(k, r.Task.Scope...)
}

func delegationKey(k []byte, r *Request) []byte {
	k = appendNum(k, int64(r.Task.Depth))
	k = appendNum(k, int64(r.Task.MaxDepth))
	chain := chainOf(r)
	k = appendNum(k, int64(len(chain)))
	return appendKey(k, chain...)
}

// budgetRecord is the task's remaining budget. It changes with every
// counted action, so it is memoized by its own values rather than with the
// rest of the subject (which would then never be found again).
func budgetRecord(r *Request) types.Value {
	return types.NewRecord(types.RecordMap{
		"actions_left": budget(r.Task.ActionsLeft),
		"writes_left":  budget(r.Task.WritesLeft),
	})
}

func objectKey(k []byte, r *Request, rtype string) []byte {
	k = appendKey(k, rtype, r.Resource.ID, r.Resource.Server, r.Resource.Sensitivity, r.Resource.Tier)
	k = appendKey(k, r.Destination.Host, r.Destination.Method, r.Destination.Path)
	k = appendNum(k, int64(len(r.Resource.Labels)))
	return appendKey(k, r.Resource.Labels...)
}

func buildObject(r *Request, rtype string) objectParts {
	return objectParts{
		resource: resourceEntity(r, rtype),
		dest: types.Value(types.NewRecord(types.RecordMap{
			"host":   types.String(r.Destination.Host),
			"method": types.String(r.Destination.Method),
			"path":   types.String(r.Destination.Path),
		})),
	}
}

// toCedar converts a validated request; c (may be nil) memoizes the parts
// that are stable across requests. now is used when r.Time is zero.
//
// The input comes from inputPool: the caller returns it with putInput
// once the evaluation is over (nothing retains it: cedar-go does not keep
// requests, and Decisions hold only strings).
func toCedar(r *Request, now time.Time, c *caches) *cedarInput {
	in := inputPool.Get().(*cedarInput)
	rtype := ResourceType(r.Action)
	var (
		principal        types.Entity
		task, delegation types.Value
		obj              objectParts
	)
	if c == nil {
		principal, task, delegation = principalEntity(r), taskRecord(r), delegationRecord(r)
		obj = buildObject(r, rtype)
	} else {
		var buf [512]byte
		principal = c.principals.get(principalKey(buf[:0], r), func() types.Entity { return principalEntity(r) })
		task = c.tasks.get(taskKey(buf[:0], r), func() types.Value { return taskRecord(r) })
		delegation = c.delegations.get(delegationKey(buf[:0], r), func() types.Value { return delegationRecord(r) })
		obj = c.objects.get(objectKey(buf[:0], r, rtype), func() objectParts { return buildObject(r, rtype) })
	}
	in.principal, in.resource = principal, obj.resource
	if hasServer(r, rtype) {
		in.hasServer = true
		in.server = types.Entity{UID: types.NewEntityUID(typeServer, types.String(r.Resource.Server))}
	}
	t := r.Time
	if t.IsZero() {
		t = now
	}
	t = t.UTC()
	taint, agentTaint := orPublic(r.Taint), orPublic(r.AgentTaint)
	in.req = types.Request{
		Principal: in.principal.UID,
		Action:    actionUID(r.Action),
		Resource:  in.resource.UID,
	}
	m := in.ctx
	m["task"] = task
	if c == nil {
		m["budget"] = budgetRecord(r)
	} else {
		var buf [32]byte
		k := appendNum(appendNum(buf[:0], int64(budget(r.Task.ActionsLeft))), int64(budget(r.Task.WritesLeft)))
		m["budget"] = c.budgets.get(k, func() types.Value { return budgetRecord(r) })
	}
	m["delegation"] = delegation
	m["risk"] = boxString(r.Risk)
	m["high_impact"] = types.Boolean(r.HighImpact)
	m["destination"] = obj.dest
	m["command"] = boxString(r.Command)
	m["taint"] = boxString(taint)
	m["taint_level"] = types.Long(SensitivityLevel(taint))
	m["agent_taint"] = boxString(agentTaint)
	m["agent_taint_level"] = types.Long(SensitivityLevel(agentTaint))
	m["time"] = types.NewDatetime(t)
	m["hour"] = types.Long(t.Hour())
	m["weekday"] = types.Long(t.Weekday())
	in.req.Context = rawRecord(m)
	return in
}

// contextKeys is the number of top-level context attributes.
const contextKeys = 14

var inputPool = sync.Pool{New: func() any {
	return &cedarInput{ctx: make(types.RecordMap, contextKeys), all: newPolicyList()}
}}

// putInput returns in to the pool. When the fast record path is off,
// NewRecord copied the map, so reuse is safe either way.
func putInput(in *cedarInput) {
	in.principal, in.resource, in.server, in.hasServer = types.Entity{}, types.Entity{}, types.Entity{}, false
	in.req = types.Request{}
	in.all.parts = [6][]*compiled{}
	inputPool.Put(in)
}
