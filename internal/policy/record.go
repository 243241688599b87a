package policy

import (
	"maps"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// cedar-go's types.NewRecord clones its map and hashes every key and value
// (through encoding/binary, with reflection): about 400 ns per attribute.
// Building the request context that way would cost more than the whole
// decision budget. So mandate (1) caches the records and entities that
// are stable across requests (agent, task, delegation chain, resource)
// in the Engine, and (2) builds the one record that changes on every
// request — the top-level context — without hashing.
//
// A record's hash is only used when it is compared or put in a set.
// Compile rejects policies that use the context as a whole value (rather
// than its attributes), so the top-level context is never compared and
// its hash is never read. recordLayout must match types.Record; the
// layout is checked once, and if cedar-go changes it, rawRecord falls back
// to types.NewRecord (correct, only slower); TestRawRecordFastPath notices.
type recordLayout struct {
	m       types.RecordMap
	hashVal uint64
}

var rawRecordOK = sync.OnceValue(func() bool {
	t := reflect.TypeFor[types.Record]()
	return t.NumField() == 2 &&
		t.Field(0).Type == reflect.TypeFor[types.RecordMap]() && t.Field(0).Offset == 0 &&
		t.Field(1).Type.Kind() == reflect.Uint64 &&
		t.Size() == unsafe.Sizeof(recordLayout{})
})

// rawRecord makes a Record of m without copying or hashing it; m must not
// be modified afterwards. Use it only for the top-level context.
func rawRecord(m types.RecordMap) types.Record {
	if !rawRecordOK() {
		return types.NewRecord(m)
	}
	var r types.Record
	(*recordLayout)(unsafe.Pointer(&r)).m = m
	return r
}

// wholeContextUse reports whether a policy uses the context variable other
// than through an attribute access (context.x, context has x): the
// context's hash is not computed (see rawRecord), so comparing it as a
// whole is not supported.
func wholeContextUse(p *xast.Policy) bool {
	found := false
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			switch n := n.(type) {
			case xast.NodeTypeAccess:
				if isContextVar(n.Arg) {
					return false
				}
			case xast.NodeTypeHas:
				if isContextVar(n.Arg) {
					return false
				}
			case xast.NodeTypeVariable:
				if n.Name == "context" {
					found = true
				}
			}
			return !found
		})
	}
	return found
}

func isContextVar(n xast.IsNode) bool {
	v, ok := n.(xast.NodeTypeVariable)
	return ok && v.Name == "context"
}

// memo is a bounded concurrent cache of Cedar values by key. Hits read an
// immutable snapshot through an atomic pointer — no lock, no shared
// write, so parallel decisions do not contend; misses go to a small
// mutex-guarded map that is merged into a new snapshot once it holds an
// eighth of the snapshot's size (amortized constant work per insert).
// When full it starts over: entries are cheap to rebuild. Lookups take a
// []byte key and do not allocate.
type memo[V any] struct {
	read  atomic.Pointer[map[string]V]
	mu    sync.Mutex
	dirty map[string]V
	size  int
}

func newMemo[V any](size int) *memo[V] {
	c := &memo[V]{dirty: make(map[string]V), size: size}
	c.read.Store(&map[string]V{})
	return c
}

func (c *memo[V]) get(key []byte, build func() V) V {
	read := *c.read.Load()
	if v, ok := read[string(key)]; ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.dirty[string(key)]; ok {
		return v
	}
	v := build()
	read = *c.read.Load()
	if len(read)+len(c.dirty) >= c.size {
		c.read.Store(&map[string]V{})
		clear(c.dirty)
		read = nil
	}
	c.dirty[string(key)] = v
	if len(c.dirty) > len(read)/8 {
		merged := make(map[string]V, len(read)+len(c.dirty))
		maps.Copy(merged, read)
		maps.Copy(merged, c.dirty)
		c.read.Store(&merged)
		clear(c.dirty)
	}
	return v
}

// objectParts are the Cedar values that depend only on the resource and
// the destination.
type objectParts struct {
	resource types.Entity
	dest     types.Value
}

// boxed holds pre-boxed values of the small closed vocabularies that
// appear in every context, so that building it does not allocate them.
var boxed = func() map[string]types.Value {
	m := map[string]types.Value{"": types.String("")}
	for _, s := range append(append([]string{}, Risks...), Sensitivities...) {
		m[s] = types.String(s)
	}
	return m
}()

func boxString(s string) types.Value {
	if v, ok := boxed[s]; ok {
		return v
	}
	return types.String(s)
}

// caches holds an Engine's memoized Cedar values.
type caches struct {
	// The subject's parts, stable across a task's requests: by agent, by
	// task and by delegation chain (see principalKey).
	principals  *memo[types.Entity]
	tasks       *memo[types.Value]
	delegations *memo[types.Value]
	objects     *memo[objectParts]
	budgets     *memo[types.Value] // by (actions left, writes left)
}

// cacheSize bounds each memo.
const cacheSize = 16_384

func newCaches() *caches {
	return &caches{principals: newMemo[types.Entity](cacheSize), tasks: newMemo[types.Value](cacheSize), delegations: newMemo[types.Value](cacheSize),
		objects: newMemo[objectParts](cacheSize), budgets: newMemo[types.Value](cacheSize)}
}
