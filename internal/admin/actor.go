package admin

import "context"

type actorKey struct{}

// ActorLocal is the actor recorded for requests over the local admin socket.
const ActorLocal = "admin:local"

// WithActor returns a context that carries the identity of the admin making
// a request, for the events it causes.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFromContext returns the admin identity set by WithActor, or "".
func ActorFromContext(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}
